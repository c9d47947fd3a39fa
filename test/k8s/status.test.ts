import test from 'ava';
import type { V1Service } from '@kubernetes/client-node';
import { statusMatches, statusPatch, type DesiredStatus } from '../../src/k8s/status.js';

const other = { type: 'example.com/Ready', status: 'True', reason: 'Fine', message: 'ok', lastTransitionTime: '2026-01-01T00:00:00Z' };

function svc(conditions: unknown[], ingress: string[]): V1Service {
  return { metadata: { namespace: 'ns', name: 'a', generation: 3 }, status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) }, conditions: conditions as never } };
}

const desired: DesiredStatus = { ingress: ['192.0.2.1'], condition: { status: 'True', reason: 'Advertised', message: '192.0.2.1 advertised by 1 edge(s): e' } };

test('status patch keeps other conditions and sets ours with a transition time', (t) => {
  const now = new Date('2026-11-22T06:00:00.123Z');
  const p = statusPatch(svc([other], []), desired, now) as { status: { loadBalancer: unknown; conditions: Record<string, unknown>[] } };
  t.deepEqual(p.status.loadBalancer, { ingress: [{ ip: '192.0.2.1' }] });
  t.deepEqual(p.status.conditions[0], other);
  t.like(p.status.conditions[1], { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', lastTransitionTime: '2026-11-22T06:00:00.123Z', observedGeneration: 3 });
});

test('transition time is kept while the condition status does not change', (t) => {
  const ours = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'old text', lastTransitionTime: '2026-11-01T00:00:00Z' };
  const p = statusPatch(svc([ours], ['192.0.2.1']), desired, new Date()) as { status: { conditions: Record<string, unknown>[] } };
  t.is(p.status.conditions[0]!.lastTransitionTime, '2026-11-01T00:00:00Z');
  t.is(p.status.conditions[0]!.message, desired.condition!.message);
});

test('statusMatches compares addresses and our condition only', (t) => {
  const ours = { type: 'edgelb.io/Advertised', ...desired.condition, lastTransitionTime: '2026-11-01T00:00:00Z' };
  t.true(statusMatches(svc([other, ours], ['192.0.2.1']), desired));
  t.false(statusMatches(svc([other, ours], []), desired));
  t.false(statusMatches(svc([other], ['192.0.2.1']), desired));
  t.false(statusMatches(svc([other, { ...ours, reason: 'NoEdges' }], ['192.0.2.1']), desired));
  t.true(statusMatches(svc([other], []), { ingress: [], condition: null }));
  // Removing our condition keeps the others.
  const p = statusPatch(svc([other, ours], ['192.0.2.1']), { ingress: [], condition: null }, new Date()) as { status: { conditions: unknown[] } };
  t.deepEqual(p.status.conditions, [other]);
});

test('statusMatches: an ingress entry another writer left (a hostname, alone or beside our address) is not ours — the write that replaces the list is due', (t) => {
  const ours = { type: 'edgelb.io/Advertised', ...desired.condition, lastTransitionTime: '2026-11-01T00:00:00Z' };
  const withIngress = (ingress: unknown[]): V1Service => ({ ...svc([ours], []), status: { loadBalancer: { ingress: ingress as never }, conditions: [ours] as never } });
  t.true(statusMatches(withIngress([{ ip: '192.0.2.1', ipMode: 'VIP' }]), desired), 'the API server adds ipMode to our entry');
  t.false(statusMatches(withIngress([{ ip: '192.0.2.1' }, { hostname: 'lb.example.com' }]), desired));
  t.false(statusMatches(withIngress([{ hostname: 'lb.example.com' }, { ip: '192.0.2.1' }]), desired));
  t.false(statusMatches(withIngress([{ ip: '192.0.2.1', hostname: 'lb.example.com' }]), desired));
  t.false(statusMatches(withIngress([{ hostname: 'lb.example.com' }]), { ingress: [], condition: { ...desired.condition! } }));
});
