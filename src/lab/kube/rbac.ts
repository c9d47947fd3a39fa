// Names deploy/rbac.yaml gives edgelb's objects (the lab and the tests mint
// tokens for these ServiceAccounts; test/deploy checks the file uses them).
export const EDGELB_NAMESPACE = 'edgelb-system';
export const EDGE_SERVICE_ACCOUNT = 'edgelb-edge';
export const NODE_SERVICE_ACCOUNT = 'edgelb-node';
