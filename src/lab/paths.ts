// Where the lab finds the programs it starts: this Node, the built tree, and
// the Kubernetes binaries of the release pinned in tools/kube.
import { join } from 'node:path';
import { repoRoot } from '../assets.js';

export const nodeBin = process.execPath;
export const root = repoRoot();
export const dist = (p: string): string => join(root, 'dist', p);
/** kube-apiserver, kube-controller-manager and kubectl (scripts/setup builds them from tools/kube). */
export const KUBE_BIN = process.env.EDGELB_KUBE_BIN ?? join(root, '.tools/kube/bin');
export const KUBECTL = process.env.KUBECTL ?? join(KUBE_BIN, 'kubectl');
