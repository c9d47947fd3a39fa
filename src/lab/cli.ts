// `npm run lab -- up | down | status [--json] | kubectl ARGS…`
import { parseArgs } from 'node:util';
import { Lab, labDown, labUp, listLabs } from './lab.js';
import { renderStatus } from './render.js';
import { APPLIANCE_BFD_TIMERS } from './appliance.js';
import type { LabOptions } from './state.js';

const HELP = `Usage: npm run lab -- COMMAND [options]

  up [--prefix elb-XXXX-] [--dispatch ip-option|ipip|auto] [--mode dsr|snat|hybrid]
     [--no-bfd] [--no-agents] [--appliance] [--ipv6] [--keep-on-failure] [--json]
                      build a lab: client, FRR router, 2 edges (gobgpd + edgelb agent),
                      2 Kubernetes nodes with 2 echo pods each, etcd + kube-apiserver + kube-controller-manager;
                      --ipv6: dual-stack (IPv6 addresses, BGP sessions, VIP pool and Service range too);
                      --appliance: edge1 is the appliance image (images/out/edgelb.raw,
                      npm run image) booted under QEMU on taps in the lab's networks
  status [PREFIX] [--json]
                      namespaces, addresses, kubeconfig, agents, VIPs
  down [PREFIX | --all]
                      remove the lab (processes, namespaces, pinned maps, files)
  kubectl [--lab PREFIX] ARGS...
                      run the lab's kubectl (1.20, in the mgmt namespace)

PREFIX may be omitted when exactly one lab exists.
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function pickLab(given: string | undefined): string {
  if (given) return given;
  const labs = listLabs();
  if (labs.length === 1) return labs[0]!;
  throw new Error(labs.length === 0 ? 'no lab is running (npm run lab -- up)' : `several labs are running (${labs.join(', ')}): name one`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  switch (cmd) {
    case 'up': {
      const { values } = parseArgs({
        args: rest,
        options: {
          prefix: { type: 'string' }, dispatch: { type: 'string' }, mode: { type: 'string' },
          'no-bfd': { type: 'boolean' }, 'no-agents': { type: 'boolean' }, appliance: { type: 'boolean' }, ipv6: { type: 'boolean' }, 'keep-on-failure': { type: 'boolean' }, json: { type: 'boolean' },
        },
      });
      if (values.dispatch && !['ip-option', 'ipip', 'auto'].includes(values.dispatch)) throw new Error(`--dispatch: "${values.dispatch}" is not ip-option, ipip or auto`);
      if (values.mode && !['dsr', 'snat', 'hybrid'].includes(values.mode)) throw new Error(`--mode: "${values.mode}" is not dsr, snat or hybrid`);
      const lab = await labUp({
        ...(values.prefix ? { prefix: values.prefix } : {}),
        ...(values.dispatch ? { dispatch: values.dispatch as LabOptions['dispatch'] } : {}),
        ...(values.mode ? { mode: values.mode as LabOptions['mode'] } : {}),
        bfd: !values['no-bfd'],
        agents: !values['no-agents'],
        appliance: !!values.appliance,
        ipv6: !!values.ipv6,
        ...(values.appliance ? { bfdTimers: { ...APPLIANCE_BFD_TIMERS } } : {}),
        keepOnFailure: !!values['keep-on-failure'],
        say,
      });
      const d = await lab.describe();
      process.stdout.write(values.json ? `${JSON.stringify(d, null, 2)}\n` : `${renderStatus(d)}\n`);
      return d.phase === 'up' ? 0 : 1;
    }
    case 'status': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { json: { type: 'boolean' } } });
      const labs = positionals[0] ? [positionals[0]] : listLabs();
      if (labs.length === 0) {
        process.stdout.write(values.json ? '{"labs":[]}\n' : 'no lab is running\n');
        return 0;
      }
      const ds = [];
      for (const p of labs) ds.push(await Lab.load(p).describe());
      if (values.json) process.stdout.write(`${JSON.stringify(ds.length === 1 && positionals[0] ? ds[0] : { labs: ds }, null, 2)}\n`);
      else process.stdout.write(`${ds.map(renderStatus).join('\n\n')}\n`);
      return 0;
    }
    case 'down': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { all: { type: 'boolean' } } });
      const labs = values.all ? listLabs() : [pickLab(positionals[0])];
      let bad = 0;
      for (const p of labs) bad += (await labDown(p, say)).length;
      return bad ? 1 : 0;
    }
    case 'kubectl': {
      let prefix: string | undefined;
      let args = rest;
      if (args[0] === '--lab') {
        prefix = args[1];
        args = args.slice(2);
      }
      const lab = Lab.load(pickLab(prefix));
      try {
        // `-f -` reads the manifest from our stdin.
        const input = args.includes('-') && !process.stdin.isTTY ? await readStdin() : undefined;
        const r = await lab.kubectl(args, input === undefined ? {} : { input });
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        return 0;
      } catch (e) {
        process.stderr.write(`${(e as Error).message}\n`);
        return 1;
      }
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${cmd}"\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`lab: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
