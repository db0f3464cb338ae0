'use strict';
// Client-side health checking for targets that name several servers: the load-balancing
// policy `ffibox_health_round_robin`, gRPC's round_robin with each server's
// grpc.health.v1.Health Watch stream deciding whether it gets new sessions.
//
// The C++ and Python clients ask gRPC for this with a service config
// (`healthCheckConfig: {serviceName: "ffibox.v1.Ffibox"}`, gRFC A17). @grpc/grpc-js (1.14)
// has no client-side health checking: its service config parser drops `healthCheckConfig`,
// and its subchannels report themselves healthy always. It does have the parts A17 is made
// of, exported as `grpc.experimental`: a policy may wrap the subchannels it creates
// (BaseSubchannelWrapper) and mark them unhealthy, round_robin's per-server pick_first
// reports an unhealthy server as TRANSIENT_FAILURE so that round_robin skips it, and a
// subchannel offers a channel of its own (getChannel) for a call to that one server. This
// policy joins them, following A17:
// - a server is left out until its Watch answers SERVING (so a connection alone does not
//   count), and again whenever it answers anything else;
// - a Watch that ends with an error leaves the server out and is retried with backoff while
//   the connection lasts; a server without the health service (UNIMPLEMENTED) is treated
//   as healthy, as gRPC's own clients do.
// Everything else (connecting, reconnecting, re-resolving DNS, picking) is grpc-js's.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const POLICY_NAME = 'ffibox_health_round_robin';

// grpc.health.v1 (grpc/src/proto/grpc/health/v1/health.proto), the messages Watch uses.
const HEALTH_PROTO = {
  nested: {
    grpc: { nested: { health: { nested: { v1: { nested: {
      HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
      HealthCheckResponse: {
        fields: { status: { type: 'ServingStatus', id: 1 } },
        nested: {
          ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } },
        },
      },
      Health: {
        methods: {
          Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' },
          Watch: {
            requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse',
            responseStream: true,
          },
        },
      },
    } } } } } },
  },
};

let healthService = null;
/** The grpc.health.v1.Health client constructor (also what a test server implements). */
function healthClientConstructor() {
  if (healthService === null) {
    const definition = protoLoader.fromJSON(HEALTH_PROTO, { enums: String, defaults: true });
    healthService = grpc.loadPackageDefinition(definition).grpc.health.v1.Health;
  }
  return healthService;
}

/** The policy's service config entry: round_robin over servers SERVING `serviceName`. */
function healthRoundRobinConfig(serviceName) {
  return { [POLICY_NAME]: { serviceName } };
}

class HealthRoundRobinConfig {
  constructor(serviceName) {
    this.serviceName = serviceName;
  }

  getLoadBalancerName() {
    return POLICY_NAME;
  }

  toJsonObject() {
    return healthRoundRobinConfig(this.serviceName);
  }

  static createFromJson(json) {
    if (typeof json?.serviceName !== 'string') {
      throw new Error('serviceName must be a string');
    }
    return new HealthRoundRobinConfig(json.serviceName);
  }
}

// One server's subchannel, healthy only while its Watch says SERVING.
class HealthWatchedSubchannel extends grpc.experimental.BaseSubchannelWrapper {
  constructor(child, serviceName) {
    super(child);
    this.serviceName = serviceName;
    this.call = null;
    this.client = null;
    this.retry = new grpc.experimental.BackoffTimeout(() => this.watch());
    this.retry.unref();
    this.setHealthy(false);
    this.onState = (subchannel, previous, state) => this.watchWhile(state);
    child.addConnectivityStateListener(this.onState);
    this.watchWhile(child.getConnectivityState());
  }

  // Watches while the connection is READY; otherwise the server is out (and gRPC
  // reconnects by itself).
  watchWhile(state) {
    if (state === grpc.connectivityState.READY) {
      if (this.call === null && !this.retry.isRunning()) this.watch();
      return;
    }
    this.stopWatching();
    this.setHealthy(false);
  }

  watch() {
    if (this.getConnectivityState() !== grpc.connectivityState.READY) return;
    if (this.client === null) {
      const Health = healthClientConstructor();
      // The subchannel's own channel: the stream goes to this server and no other.
      this.client = new Health('unused', grpc.credentials.createInsecure(),
        { channelOverride: this.getChannel() });
    }
    const call = this.client.Watch({ service: this.serviceName });
    this.call = call;
    call.on('data', (response) => {
      this.retry.reset();
      this.setHealthy(response.status === 'SERVING');
    });
    call.on('error', (error) => {
      if (this.call !== call) return;  // cancelled by stopWatching
      this.call = null;
      if (error.code === grpc.status.UNIMPLEMENTED) {
        this.setHealthy(true);  // no health service there: A17 disables the check
        return;
      }
      this.setHealthy(false);
      this.retry.runOnce();
    });
    call.on('end', () => {
      if (this.call !== call) return;
      // The server ended the stream: it says nothing more about its health.
      this.call = null;
      this.setHealthy(false);
      this.retry.runOnce();
    });
  }

  stopWatching() {
    this.retry.stop();
    this.retry.reset();
    if (this.call !== null) {
      const call = this.call;
      this.call = null;
      call.cancel();
    }
  }

  destroy() {
    this.child.removeConnectivityStateListener(this.onState);
    this.stopWatching();
    if (this.client !== null) this.client.close();
    super.destroy();
  }
}

// round_robin (grpc-js's own, as a child policy) over subchannels wrapped as above.
class HealthRoundRobin {
  constructor(channelControlHelper) {
    this.serviceName = '';
    const helper = grpc.experimental.createChildChannelControlHelper(channelControlHelper, {
      createSubchannel: (address, options) => new HealthWatchedSubchannel(
        channelControlHelper.createSubchannel(address, options), this.serviceName),
    });
    this.roundRobin = new grpc.experimental.ChildLoadBalancerHandler(helper);
    this.roundRobinConfig = grpc.experimental.parseLoadBalancingConfig({ round_robin: {} });
  }

  updateAddressList(endpoints, config, options, resolutionNote) {
    if (!(config instanceof HealthRoundRobinConfig)) return false;
    this.serviceName = config.serviceName;
    return this.roundRobin.updateAddressList(endpoints, this.roundRobinConfig, options,
      resolutionNote);
  }

  exitIdle() {
    this.roundRobin.exitIdle();
  }

  resetBackoff() {
    this.roundRobin.resetBackoff();
  }

  destroy() {
    this.roundRobin.destroy();
  }

  getTypeName() {
    return POLICY_NAME;
  }
}

grpc.experimental.registerLoadBalancerType(POLICY_NAME, HealthRoundRobin, HealthRoundRobinConfig);

module.exports = { healthRoundRobinConfig, healthClientConstructor };
