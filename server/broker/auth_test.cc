#include "server/broker/auth.h"

#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

Authenticator MakeAuthenticator() {
  ClientIdentity local{"local", "", {}, 4, "", false};
  ClientIdentity alice{"alice", "alice-token-0123456789", {}, 4, "", false};
  ClientIdentity bob{"bob", "bob-token-0123456789ab", {}, 4, "bob.client", false};
  ClientIdentity carol{"carol", "carol-token-0123456789", {}, 4, "", true};
  return Authenticator({local, alice, bob, carol}, "local");
}

PresentedCredentials Tcp(std::optional<std::string> authorization,
                         std::vector<std::string> names = {}) {
  PresentedCredentials presented;
  presented.authorization = std::move(authorization);
  presented.certificate_names = std::move(names);
  return presented;
}

TEST(ConstantTimeEquals, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(Authenticator, TcpWithoutTokenIsUnauthenticated) {
  EXPECT_THAT(MakeAuthenticator().Authenticate(Tcp(std::nullopt)).status(),
              StatusIs(v1::UNAUTHENTICATED));
}

TEST(Authenticator, WrongOrMalformedTokenIsUnauthenticated) {
  Authenticator auth = MakeAuthenticator();
  EXPECT_THAT(auth.Authenticate(Tcp("Bearer nope-0123456789abcdef")).status(),
              StatusIs(v1::UNAUTHENTICATED));
  EXPECT_THAT(auth.Authenticate(Tcp("Basic alice-token-0123456789")).status(),
              StatusIs(v1::UNAUTHENTICATED));
  EXPECT_THAT(auth.Authenticate(Tcp("Bearer ")).status(), StatusIs(v1::UNAUTHENTICATED));
}

TEST(Authenticator, RightTokenNamesItsIdentity) {
  Authenticator auth = MakeAuthenticator();
  absl::StatusOr<const ClientIdentity*> identity =
      auth.Authenticate(Tcp("Bearer alice-token-0123456789"));
  ASSERT_OK(identity);
  EXPECT_EQ((*identity)->name, "alice");
}

TEST(Authenticator, DisabledIdentityIsPermissionDenied) {
  EXPECT_EQ(
      ErrorCodeOf(MakeAuthenticator().Authenticate(Tcp("Bearer carol-token-0123456789")).status()),
      v1::PERMISSION_DENIED);
}

TEST(Authenticator, CertificateMustCarryTheIdentitysName) {
  Authenticator auth = MakeAuthenticator();
  EXPECT_EQ(
      ErrorCodeOf(auth.Authenticate(Tcp("Bearer bob-token-0123456789ab", {"mallory"})).status()),
      v1::PERMISSION_DENIED);
  EXPECT_TRUE(auth.Authenticate(Tcp("Bearer bob-token-0123456789ab", {"x", "bob.client"})).ok());
}

TEST(Authenticator, UnixSocketWithoutTokenIsTheLocalIdentity) {
  PresentedCredentials presented;
  presented.unix_socket = true;
  Authenticator auth = MakeAuthenticator();
  absl::StatusOr<const ClientIdentity*> identity = auth.Authenticate(presented);
  ASSERT_TRUE(identity.ok());
  EXPECT_EQ((*identity)->name, "local");
  presented.authorization = "Bearer wrong-token-0123456789";
  EXPECT_THAT(auth.Authenticate(presented).status(), StatusIs(v1::UNAUTHENTICATED));
}

}  // namespace
}  // namespace ffibox
