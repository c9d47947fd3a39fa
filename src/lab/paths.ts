// Where the lab finds the programs it starts: this Node, the built tree, kubectl.
import { join } from 'node:path';
import { repoRoot } from '../datapath/loader.js';

export const nodeBin = process.execPath;
export const root = repoRoot();
export const dist = (p: string): string => join(root, 'dist', p);
export const KUBECTL = process.env.KUBECTL ?? join(root, '.tools/kubectl/usr/bin/kubectl');
