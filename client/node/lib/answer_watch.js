'use strict';
// The client's own deadline for a session's answers, so that a server that stops answering
// (stopped, wedged, or no ffiboxd at all) cannot leave a request's promise unsettled forever.
//
// The server runs a session's worker requests one at a time, in order, each within its own
// deadline, and answers the others at once. So while requests wait, some message is due
// within the longest of their bounds (a request's deadline plus a margin), counted from the
// last message the server sent, or from the request that found none waiting. A request
// queued behind others thus gets its whole bound once they have been answered, however long
// the queue. When nothing comes in time the watch expires, once. Silence while the client's
// own event loop was held up (long synchronous work) does not count against the server.

// The longest delay setTimeout takes; a longer bound is waited for in several steps.
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

// A timer that fires this much later than asked means Node's loop was held up by other work
// meanwhile: the silence was the client's, not the server's.
const HELD_UP_MS = 1000;

class AnswerWatch {
  /** `onExpired(silentMs, boundMs)` runs when the server sent nothing for `boundMs`. */
  constructor(onExpired) {
    this._onExpired = onExpired;
    this._bounds = new Map();  // bound in ms -> how many waiting requests have it
    this._waiting = 0;
    this._since = 0;           // when the current silence began (performance.now())
    this._timer = null;
    this._timerDue = 0;
    this._confirmation = null;   // the setImmediate that looks once more before expiring
    this._stopped = false;
  }

  /** A request whose answer is due within `boundMs` was sent. */
  sent(boundMs) {
    if (this._stopped) return;
    if (this._waiting === 0) this._since = performance.now();
    ++this._waiting;
    this._bounds.set(boundMs, (this._bounds.get(boundMs) || 0) + 1);
    this._arm();
  }

  /** The server sent a message: an answer, an event or a callback invocation. */
  heard() {
    // The timer is not moved for every message; when it fires it looks at this time first.
    this._since = performance.now();
  }

  /** A request sent with `boundMs` was answered. */
  answered(boundMs) {
    if (this._stopped) return;
    --this._waiting;
    const left = this._bounds.get(boundMs) - 1;
    if (left > 0) this._bounds.set(boundMs, left);
    else this._bounds.delete(boundMs);
    // With nothing waiting the timer is left to run out (it then stops): a call at a time
    // would otherwise set and clear a timer each. The session's stream keeps Node running
    // anyway while the session is open, and stop() clears it when the session ends.
    if (this._waiting > 0) this._arm();
  }

  /** Nothing is waited for any more (the session ended). */
  stop() {
    this._stopped = true;
    this._disarm();
  }

  _longestBound() {
    let longest = 0;
    for (const bound of this._bounds.keys()) longest = Math.max(longest, bound);
    return longest;
  }

  // Makes the timer fire no later than the current silence may last. A timer that fires
  // earlier looks again then, so it is left alone.
  _arm() {
    const due = this._since + this._longestBound();
    if (this._timer !== null && this._timerDue <= due) return;
    this._disarm();
    const now = performance.now();
    const delay = Math.ceil(Math.min(Math.max(due - now, 0), MAX_TIMER_DELAY_MS));
    this._timerDue = now + delay;  // when it should fire: later, and the loop was held up
    this._timer = setTimeout(() => this._check(), delay);
  }

  _disarm() {
    if (this._timer !== null) clearTimeout(this._timer);
    if (this._confirmation !== null) clearImmediate(this._confirmation);
    this._timer = null;
    this._confirmation = null;
  }

  _check() {
    this._timer = null;
    if (this._stopped || this._waiting === 0) return;
    const now = performance.now();
    if (now - this._timerDue > HELD_UP_MS) {
      // The server gets its whole bound again, from the moment the client can listen.
      this._since = now;
      this._arm();
      return;
    }
    if (now - this._since < this._longestBound()) {
      this._arm();
      return;
    }
    // Node runs due timers before it reads what arrived meanwhile: an answer that came while
    // the loop was busy is read in the same turn, after this. Look once more then.
    const since = this._since;
    this._confirmation = setImmediate(() => {
      this._confirmation = null;
      if (this._stopped || this._waiting === 0) return;
      const bound = this._longestBound();
      const silent = performance.now() - this._since;
      if (this._since !== since || silent < bound) {
        this._arm();
        return;
      }
      this.stop();
      this._onExpired(Math.round(silent), bound);
    });
  }
}

module.exports = { AnswerWatch, MAX_TIMER_DELAY_MS };
