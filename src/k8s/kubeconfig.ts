// KubeConfig loading with connection reuse.
//
// @kubernetes/client-node 2.0.1 builds a new undici Agent for every request
// whenever the cluster has TLS options (any CA, client certificate or
// insecure-skip-tls-verify), so every request opens a new connection (and a
// TLS handshake): ~200 requests/s and hundreds of MB of dead sockets when
// writing 10 000 statuses. We memoise the dispatcher per cluster/user so
// requests share one keep-alive pool.
import { KubeConfig } from '@kubernetes/client-node';

type DispatcherFactory = (cluster: unknown, agentOptions: unknown) => unknown;

export function withSharedDispatcher(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher: DispatcherFactory };
  const original = target.createDispatcher.bind(kc);
  const cache = new Map<string, unknown>();
  target.createDispatcher = (cluster, agentOptions) => {
    const c = cluster as { name?: string; server?: string } | null;
    const key = JSON.stringify([c?.name, c?.server, kc.getCurrentUser()?.name]);
    if (!cache.has(key)) cache.set(key, original(cluster, agentOptions));
    return cache.get(key);
  };
  return kc;
}

/** Loads a kubeconfig file, or in-cluster/$KUBECONFIG/~/.kube/config when `path` is empty. */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return withSharedDispatcher(kc);
}
