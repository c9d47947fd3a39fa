// RBAC refusals reach the operator as one error line naming the verb and
// the resource (the API server's own sentence), whichever client made the
// request; anything else is not called a permission problem.
import test from 'ava';
import { ApiStatusError, permissionProblem, reportPermissionProblem } from '../../src/k8s/rest.js';

const message = 'services "web" is forbidden: User "system:serviceaccount:edgelb-system:edgelb-node" cannot patch resource "services/status" in API group "" in the namespace "ns"';

test('a 403 from the lean client or from client-node becomes the server sentence plus where the permission comes from', (t) => {
  const lean = new ApiStatusError(403, 'PATCH …: HTTP 403', { kind: 'Status', code: 403, reason: 'Forbidden', message });
  t.is(permissionProblem(lean), `permission denied by the API server: ${message} (grant it to this agent's ServiceAccount; deploy/rbac.yaml has what edgelb needs)`);
  // client-node's ApiException: code + the body as text.
  const generated = Object.assign(new Error('HTTP-Code: 403'), { code: 403, body: JSON.stringify({ kind: 'Status', message }) });
  t.regex(permissionProblem(generated)!, /cannot patch resource "services\/status"/);
  t.is(permissionProblem(new ApiStatusError(404, 'not found', {})), null);
  t.is(permissionProblem(new Error('ECONNREFUSED')), null);
  t.is(permissionProblem(null), null);
});

test('each distinct refusal is logged once, at error level', (t) => {
  const logged: string[] = [];
  const logger = { error: (_o: object, msg: string) => void logged.push(msg) };
  const e = new ApiStatusError(403, 'x', { message: `${message} (once)` });
  for (let i = 0; i < 5; i++) t.true(reportPermissionProblem(logger, e, 'status'));
  t.false(reportPermissionProblem(logger, new ApiStatusError(500, 'x', {}), 'status'));
  t.is(logged.length, 1);
});
