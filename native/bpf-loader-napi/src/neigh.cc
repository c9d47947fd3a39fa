// neighbours6(ifname): the kernel's IPv6 neighbour table for one interface
// (RTM_GETNEIGH dump over NETLINK_ROUTE), for the node agent's edge trust
// (src/node-agent/edge-neighbours.ts). /proc has an IPv4 table only
// (/proc/net/arp) and the node agent's image has no iproute2, so the dump
// is done here. Like sdNotify, it shares the .node file without being part
// of the BPF loader. Entries: { dst, lladdr | undefined, state } with
// state the raw NUD_* bits (linux/neighbour.h).
#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"

namespace bpfl {

namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

struct Neigh {
  char dst[INET6_ADDRSTRLEN];
  char lladdr[18];
  bool has_lladdr;
  uint16_t state;
};

}  // namespace

static Napi::Value Neighbours6(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string ifname = ArgString(info, 0, "ifname");
  // The calling thread's network namespace (inNetns() moves the thread; /sys
  // shows the mount namespace's devices, not necessarily these).
  unsigned int ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) ThrowErrno(env, errno, "neighbours6: interface " + ifname);
  Fd s{socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)};
  if (s.fd < 0) ThrowErrno(env, errno, "neighbours6: socket(NETLINK_ROUTE)");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(s.fd, reinterpret_cast<sockaddr *>(&local), sizeof(local))) ThrowErrno(env, errno, "neighbours6: bind");

  struct {
    nlmsghdr nh;
    ndmsg nd;
  } req{};
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(ndmsg));
  req.nh.nlmsg_type = RTM_GETNEIGH;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.nd.ndm_family = AF_INET6;
  req.nd.ndm_ifindex = static_cast<int>(ifindex);  // filtered below too: older kernels ignore it in a dump
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(s.fd, &req, req.nh.nlmsg_len, 0, reinterpret_cast<sockaddr *>(&kernel), sizeof(kernel)) < 0) {
    ThrowErrno(env, errno, "neighbours6: sendto RTM_GETNEIGH");
  }

  std::vector<Neigh> out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = recv(s.fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(env, errno, "neighbours6: recv");
    }
    if (n == 0) break;
    int len = static_cast<int>(n);
    for (auto *h = reinterpret_cast<nlmsghdr *>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != 1) continue;
      if (h->nlmsg_type == NLMSG_DONE) goto done;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(h));
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) ThrowErrno(env, EPROTO, "neighbours6: short NLMSG_ERROR");
        ThrowErrno(env, -e->error, "neighbours6: RTM_GETNEIGH");
      }
      if (h->nlmsg_type != RTM_NEWNEIGH || h->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg))) continue;
      auto *nd = static_cast<ndmsg *>(NLMSG_DATA(h));
      if (nd->ndm_family != AF_INET6 || nd->ndm_ifindex != static_cast<int>(ifindex)) continue;
      Neigh e{};
      bool has_dst = false;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(ndmsg)));
      for (auto *a = reinterpret_cast<rtattr *>(reinterpret_cast<char *>(nd) + NLMSG_ALIGN(sizeof(ndmsg))); RTA_OK(a, alen);
           a = RTA_NEXT(a, alen)) {
        size_t plen = RTA_PAYLOAD(a);
        auto *p = static_cast<unsigned char *>(RTA_DATA(a));
        if (a->rta_type == NDA_DST && plen == 16) {
          has_dst = inet_ntop(AF_INET6, p, e.dst, sizeof(e.dst)) != nullptr;
        } else if (a->rta_type == NDA_LLADDR && plen == 6) {
          snprintf(e.lladdr, sizeof(e.lladdr), "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2], p[3], p[4], p[5]);
          e.has_lladdr = true;
        }
      }
      e.state = nd->ndm_state;
      if (has_dst) out.push_back(e);
    }
  }
done:
  Napi::Array arr = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("dst", Napi::String::New(env, out[i].dst));
    if (out[i].has_lladdr) o.Set("lladdr", Napi::String::New(env, out[i].lladdr));
    o.Set("state", Napi::Number::New(env, out[i].state));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

void InitNeigh(Napi::Env env, Napi::Object exports) { exports.Set("neighbours6", Napi::Function::New<Neighbours6>(env, "neighbours6")); }

}  // namespace bpfl
