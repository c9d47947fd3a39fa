// sdNotify(state): the systemd notification protocol (sd_notify(3)), so the
// agent can run as Type=notify. Node has no AF_UNIX datagram sockets, and a
// spawned systemd-notify races with its own exit (PID 1 may no longer map it
// to the unit), so the datagram is sent from the agent's own process here.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common.h"

namespace bpfl {

// Returns false when not run by systemd (no NOTIFY_SOCKET); throws when the
// socket is named but the message cannot be sent.
static Napi::Value SdNotify(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string state = ArgString(info, 0, "state");
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return Napi::Boolean::New(env, false);
  size_t len = strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
    ThrowErrno(env, EINVAL, std::string("sd_notify: NOTIFY_SOCKET=") + path);
  }
  memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, errno, "sd_notify: socket");
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr), alen);
  int err = errno;
  close(fd);
  if (n < 0) ThrowErrno(env, err, std::string("sd_notify: sendto ") + path);
  return Napi::Boolean::New(env, true);
}

void InitNotify(Napi::Env env, Napi::Object exports) { exports.Set("sdNotify", Napi::Function::New<SdNotify>(env, "sdNotify")); }

}  // namespace bpfl
