// One real control plane for a test file, seen as the edge's ServiceAccount
// sees it, with node n1 (10.0.0.1) for the endpoints (a backend on a node
// without a known address is not used). No controller manager: these files
// make selector-less Services with hand-made EndpointSlices.
import test from 'ava';
import { TestCluster } from '../lib/kube.js';
import { EDGE_SERVICE_ACCOUNT } from '../../src/lab/kube/rbac.js';
import { node } from './helpers.js';

export interface EdgeCluster {
  /** Set before the file's first test runs. */
  cluster: TestCluster;
  /** A kubeconfig with the edgelb-edge ServiceAccount's token. */
  kubeconfig: string;
}

/** Registers the file's before/after hooks; the fields are filled in before the first test. */
export function edgeClusterPerFile(tag: string): EdgeCluster {
  const k8s = {} as EdgeCluster;
  test.before(async () => {
    k8s.cluster = await TestCluster.start({ tag, controllerManager: false });
    k8s.kubeconfig = await k8s.cluster.kubeconfigFor(EDGE_SERVICE_ACCOUNT);
    await k8s.cluster.create(node('n1', '10.0.0.1'));
  });
  test.after.always(async () => {
    await k8s.cluster?.close();
  });
  return k8s;
}
