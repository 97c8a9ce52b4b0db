/**
 * Rules between variables: a value that is only required, or only valid, given another one. The loader applies
 * them after parsing and defaults; the docs list their descriptions.
 */
import type { Config, VariableName } from './schema.js';

export interface RuleContext {
  readonly production: boolean;
  /** The resolved value (from the environment or a default); undefined when unset. */
  value<K extends VariableName>(name: K): Config[K] | undefined;
  /** True when the variable has a value, or will get a generated one once loading succeeds. */
  has(name: VariableName): boolean;
  /** True when the variable was set in the environment (not defaulted). */
  fromEnv(name: VariableName): boolean;
}

export interface RuleReport {
  /** An error about `variable`: `problem` says what is wrong; `expected` defaults to the variable's own. */
  error(variable: VariableName, problem: string, expected?: string): void;
  /** A warning: loading succeeds, the message is shown at start-up. */
  warn(message: string): void;
}

export interface ConfigRule {
  /** One sentence for the docs. */
  readonly description: string;
  /** Every variable the rule reads; it is skipped when any of them is invalid. */
  readonly variables: readonly VariableName[];
  check(context: RuleContext, report: RuleReport): void;
}

function requiredWhen(
  condition: (context: RuleContext) => boolean,
  because: string,
  required: readonly VariableName[],
): (context: RuleContext, report: RuleReport) => void {
  return (context, report) => {
    if (!condition(context)) return;
    for (const name of required) {
      if (!context.has(name)) report.error(name, `is missing; it is required because ${because}`);
    }
  };
}

/** Both or neither of two variables. */
function pair(a: VariableName, b: VariableName, what: string): ConfigRule {
  return {
    description: `\`${a}\` and \`${b}\` (${what}) are set together or not at all.`,
    variables: [a, b],
    check(context, report) {
      if (context.has(a) && !context.has(b)) report.error(b, `is missing; it is required because ${a} is set`);
      if (context.has(b) && !context.has(a)) report.error(a, `is missing; it is required because ${b} is set`);
    },
  };
}

const PG_CONNECTION_VARIABLES = [
  'PGPORT',
  'PGDATABASE',
  'PGUSER',
  'PGPASSWORD',
  'PGSSLMODE',
  'DB_CA_CERT_PATH',
  'PG_READONLY_USER',
  'PG_READONLY_PASSWORD',
] as const satisfies readonly VariableName[];

export const CONFIG_RULES: readonly ConfigRule[] = [
  {
    description:
      'With `NODE_ENV=production` and `USE_AUTH0` not `true`, `ID_TOKEN` and `ACCESS_TOKEN` must be set (they are ' +
      'generated only outside production).',
    variables: ['NODE_ENV', 'USE_AUTH0', 'ID_TOKEN', 'ACCESS_TOKEN'],
    check: requiredWhen(
      (context) => context.production && context.value('USE_AUTH0') !== true,
      'NODE_ENV=production and USE_AUTH0 is not true (static tokens are generated only outside production)',
      ['ID_TOKEN', 'ACCESS_TOKEN'],
    ),
  },
  {
    description: '`USE_AUTH0=true` requires `ID_TOKEN_AUDIENCE`, `ACCESS_TOKEN_AUDIENCE`, `ISSUER` and `JWKS_URI`.',
    variables: ['USE_AUTH0', 'ID_TOKEN_AUDIENCE', 'ACCESS_TOKEN_AUDIENCE', 'ISSUER', 'JWKS_URI'],
    check: requiredWhen((context) => context.value('USE_AUTH0') === true, 'USE_AUTH0 is true', [
      'ID_TOKEN_AUDIENCE',
      'ACCESS_TOKEN_AUDIENCE',
      'ISSUER',
      'JWKS_URI',
    ]),
  },
  {
    description:
      'With `NODE_ENV=production`, `ISSUER` and `JWKS_URI` must use https:// (http:// on a loopback host is only for ' +
      'development and tests).',
    variables: ['NODE_ENV', 'ISSUER', 'JWKS_URI'],
    check(context, report) {
      if (!context.production) return;
      for (const name of ['ISSUER', 'JWKS_URI'] as const) {
        const value = context.value(name);
        if (typeof value === 'string' && !value.startsWith('https://'))
          report.error(name, 'uses http://, which is allowed only outside production', 'an https:// URL');
      }
    },
  },
  {
    description:
      '`VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION` and `VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION` are ' +
      'used only with `USE_AUTH0=true` (by `terrarium login --client-credentials`); otherwise a warning says so.',
    variables: [
      'USE_AUTH0',
      'VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION',
      'VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION',
    ],
    check(context, report) {
      if (context.value('USE_AUTH0') === true) return;
      const set = (
        ['VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION', 'VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION'] as const
      ).filter((name) => context.fromEnv(name));
      if (set.length > 0)
        report.warn(
          `${set.join(' and ')} ${set.length > 1 ? 'are' : 'is'} set but USE_AUTH0 is not true: they are used only ` +
            'by `terrarium login --client-credentials` against an OpenID Connect provider, so they do nothing here.',
        );
    },
  },
  {
    description: '`VIVARIA_IS_READ_ONLY=true` requires `ACCESS_TOKEN`.',
    variables: ['VIVARIA_IS_READ_ONLY', 'ACCESS_TOKEN'],
    check: requiredWhen((context) => context.value('VIVARIA_IS_READ_ONLY') === true, 'VIVARIA_IS_READ_ONLY is true', [
      'ACCESS_TOKEN',
    ]),
  },
  {
    description:
      '`VIVARIA_MIDDLEMAN_TYPE=remote` requires `MIDDLEMAN_API_URL` (unless `VIVARIA_IS_READ_ONLY` is true).',
    variables: ['VIVARIA_MIDDLEMAN_TYPE', 'VIVARIA_IS_READ_ONLY', 'MIDDLEMAN_API_URL'],
    check: requiredWhen(
      (context) =>
        context.value('VIVARIA_MIDDLEMAN_TYPE') === 'remote' && context.value('VIVARIA_IS_READ_ONLY') !== true,
      'VIVARIA_MIDDLEMAN_TYPE is remote',
      ['MIDDLEMAN_API_URL'],
    ),
  },
  {
    description: '`DB_DIALECT=postgres` requires `DATABASE_URL`.',
    variables: ['DB_DIALECT', 'DATABASE_URL'],
    check: requiredWhen((context) => context.value('DB_DIALECT') === 'postgres', 'DB_DIALECT is postgres', [
      'DATABASE_URL',
    ]),
  },
  {
    description:
      'AWS credentials for task VMs (`TASK_AWS_ACCESS_KEY_ID`, `TASK_AWS_SECRET_ACCESS_KEY`) require `TASK_AWS_REGION`.',
    variables: ['TASK_AWS_ACCESS_KEY_ID', 'TASK_AWS_SECRET_ACCESS_KEY', 'TASK_AWS_REGION'],
    check: requiredWhen(
      (context) => context.has('TASK_AWS_ACCESS_KEY_ID') || context.has('TASK_AWS_SECRET_ACCESS_KEY'),
      'TASK_AWS_ACCESS_KEY_ID or TASK_AWS_SECRET_ACCESS_KEY is set',
      ['TASK_AWS_REGION'],
    ),
  },
  pair('TASK_AWS_ACCESS_KEY_ID', 'TASK_AWS_SECRET_ACCESS_KEY', 'the AWS key for task VMs'),
  pair('VIVARIA_AWS_ACCESS_KEY_ID_FOR_EKS', 'VIVARIA_AWS_SECRET_ACCESS_KEY_FOR_EKS', 'the AWS key for EKS'),
  pair(
    'VIVARIA_K8S_CLUSTER_CLIENT_CERTIFICATE_DATA',
    'VIVARIA_K8S_CLUSTER_CLIENT_KEY_DATA',
    'the Kubernetes client certificate',
  ),
  pair(
    'VIVARIA_K8S_GPU_CLUSTER_CLIENT_CERTIFICATE_DATA',
    'VIVARIA_K8S_GPU_CLUSTER_CLIENT_KEY_DATA',
    'the GPU cluster client certificate',
  ),
  pair('PG_READONLY_USER', 'PG_READONLY_PASSWORD', 'the read-only database user'),
  {
    description: '`VIVARIA_EKS_CLUSTER_ID` requires `VIVARIA_EKS_CLUSTER_AWS_REGION` and `VIVARIA_K8S_CLUSTER_URL`.',
    variables: ['VIVARIA_EKS_CLUSTER_ID', 'VIVARIA_EKS_CLUSTER_AWS_REGION', 'VIVARIA_K8S_CLUSTER_URL'],
    check: requiredWhen((context) => context.has('VIVARIA_EKS_CLUSTER_ID'), 'VIVARIA_EKS_CLUSTER_ID is set', [
      'VIVARIA_EKS_CLUSTER_AWS_REGION',
      'VIVARIA_K8S_CLUSTER_URL',
    ]),
  },
  {
    description:
      '`DOCKER_TLS_VERIFY=true` only applies to a `tcp://` or `https://` `DOCKER_HOST`; with both set, `DOCKER_HOST` ' +
      'wins over `DOCKER_CONTEXT` (a warning).',
    variables: ['DOCKER_TLS_VERIFY', 'DOCKER_HOST', 'DOCKER_CONTEXT'],
    check(context, report) {
      const host = context.value('DOCKER_HOST');
      if (context.value('DOCKER_TLS_VERIFY') === true && host !== undefined && !/^(tcp|https):\/\//.test(host)) {
        report.error(
          'DOCKER_TLS_VERIFY',
          `is true but DOCKER_HOST (${host}) is not a tcp:// or https:// address`,
          "'false', or a DOCKER_HOST such as tcp://host:2376",
        );
      }
      if (host !== undefined && context.has('DOCKER_CONTEXT')) {
        report.warn('DOCKER_HOST and DOCKER_CONTEXT are both set: DOCKER_HOST is used and DOCKER_CONTEXT is ignored.');
      }
    },
  },
  {
    description:
      'With `ENABLE_SNAPSHOTS=true`, the snapshot template must fit the limits: `SNAPSHOT_TEMPLATE_CPU` ≤ `MAX_CPU` ' +
      'and `SNAPSHOT_TEMPLATE_MEM_MB` ≤ `MAX_MEM_MB`.',
    variables: ['ENABLE_SNAPSHOTS', 'SNAPSHOT_TEMPLATE_CPU', 'MAX_CPU', 'SNAPSHOT_TEMPLATE_MEM_MB', 'MAX_MEM_MB'],
    check(context, report) {
      if (context.value('ENABLE_SNAPSHOTS') !== true) return;
      const cpu = context.value('SNAPSHOT_TEMPLATE_CPU')!;
      const maxCpu = context.value('MAX_CPU')!;
      if (cpu > maxCpu) {
        report.error(
          'SNAPSHOT_TEMPLATE_CPU',
          `(${cpu}) is above MAX_CPU (${maxCpu})`,
          `an integer from 1 to ${maxCpu}`,
        );
      }
      const mem = context.value('SNAPSHOT_TEMPLATE_MEM_MB')!;
      const maxMem = context.value('MAX_MEM_MB')!;
      if (mem > maxMem) {
        report.error(
          'SNAPSHOT_TEMPLATE_MEM_MB',
          `(${mem}) is above MAX_MEM_MB (${maxMem})`,
          `an integer from 1 to ${maxMem}`,
        );
      }
    },
  },
  {
    description:
      'A warm pool (`TERRARIUM_VMM_WARM_POOL_SIZE` > 0) fits the limits: size ≤ `MAX_VMS`, ' +
      '`TERRARIUM_VMM_WARM_POOL_CPU` ≤ `MAX_CPU`, `TERRARIUM_VMM_WARM_POOL_MEM_MB` ≤ `MAX_MEM_MB`.',
    variables: [
      'TERRARIUM_VMM_WARM_POOL_SIZE',
      'MAX_VMS',
      'TERRARIUM_VMM_WARM_POOL_CPU',
      'MAX_CPU',
      'TERRARIUM_VMM_WARM_POOL_MEM_MB',
      'MAX_MEM_MB',
    ],
    check(context, report) {
      const size = context.value('TERRARIUM_VMM_WARM_POOL_SIZE')!;
      if (size === 0) return;
      const limits = [
        ['TERRARIUM_VMM_WARM_POOL_SIZE', size, 'MAX_VMS'],
        ['TERRARIUM_VMM_WARM_POOL_CPU', context.value('TERRARIUM_VMM_WARM_POOL_CPU')!, 'MAX_CPU'],
        ['TERRARIUM_VMM_WARM_POOL_MEM_MB', context.value('TERRARIUM_VMM_WARM_POOL_MEM_MB')!, 'MAX_MEM_MB'],
      ] as const;
      for (const [name, value, limitName] of limits) {
        const limit = context.value(limitName)!;
        if (value > limit) report.error(name, `(${value}) is above ${limitName} (${limit})`, `at most ${limit}`);
      }
    },
  },
  {
    description:
      'Outside production, PostgreSQL settings without `PGHOST` are ignored (the embedded PGlite database is used; a ' +
      'warning).',
    variables: ['PGHOST', ...PG_CONNECTION_VARIABLES],
    check(context, report) {
      if (context.production || context.has('PGHOST')) return;
      const ignored = PG_CONNECTION_VARIABLES.filter((name) => context.fromEnv(name));
      if (ignored.length > 0) {
        report.warn(
          `${ignored.join(', ')} ${ignored.length === 1 ? 'is' : 'are'} set but PGHOST is not, so the embedded PGlite ` +
            'database is used and these are ignored. Set PGHOST to use PostgreSQL.',
        );
      }
    },
  },
  {
    description: '`AUX_VM_HAS_PUBLIC_IP=false` without `AUX_VM_SUBNET_ID` draws a warning.',
    variables: ['AUX_VM_HAS_PUBLIC_IP', 'AUX_VM_SUBNET_ID'],
    check(context, report) {
      if (context.value('AUX_VM_HAS_PUBLIC_IP') === false && !context.has('AUX_VM_SUBNET_ID')) {
        report.warn(
          'AUX_VM_HAS_PUBLIC_IP is false but AUX_VM_SUBNET_ID is unset: aux VMs will only be reachable from inside ' +
            'their VPC; choose a private subnet.',
        );
      }
    },
  },
  {
    description: 'A Kubernetes cluster URL without its CA data draws a warning.',
    variables: [
      'VIVARIA_K8S_CLUSTER_URL',
      'VIVARIA_K8S_CLUSTER_CA_DATA',
      'VIVARIA_K8S_GPU_CLUSTER_URL',
      'VIVARIA_K8S_GPU_CLUSTER_CA_DATA',
    ],
    check(context, report) {
      for (const [urlName, caName] of [
        ['VIVARIA_K8S_CLUSTER_URL', 'VIVARIA_K8S_CLUSTER_CA_DATA'],
        ['VIVARIA_K8S_GPU_CLUSTER_URL', 'VIVARIA_K8S_GPU_CLUSTER_CA_DATA'],
      ] as const) {
        if (context.has(urlName) && !context.has(caName)) {
          report.warn(`${urlName} is set without ${caName}: the cluster's identity cannot be verified.`);
        }
      }
    },
  },
  // ── microVM engine: Firecracker and the jailer (packages/server/src/sandbox/microvm) ──
  {
    description:
      '`JAILER_BIN` set in the environment requires `FIRECRACKER_BIN` set too (the jailer is told which Firecracker ' +
      'binary to run), and the two must be different files.',
    variables: ['JAILER_BIN', 'FIRECRACKER_BIN'],
    check(context, report) {
      if (context.fromEnv('JAILER_BIN') && !context.fromEnv('FIRECRACKER_BIN')) {
        report.error(
          'FIRECRACKER_BIN',
          'is not set; it is required because JAILER_BIN is set (the jailer runs FIRECRACKER_BIN)',
          'the path of the Firecracker binary the jailer runs',
        );
      }
      const jailer = context.value('JAILER_BIN');
      if (jailer !== undefined && jailer === context.value('FIRECRACKER_BIN')) {
        report.error(
          'JAILER_BIN',
          `is the same file as FIRECRACKER_BIN (${jailer})`,
          'the jailer binary, not Firecracker',
        );
      }
    },
  },
  {
    description: '`JAILER_UID` and `JAILER_GID` must not be 0: the jailer exists to drop root privileges.',
    variables: ['JAILER_UID', 'JAILER_GID'],
    check(context, report) {
      for (const name of ['JAILER_UID', 'JAILER_GID'] as const) {
        if (context.value(name) === 0) {
          report.error(name, 'is 0 (root): a jailed Firecracker would keep root privileges', 'a non-zero id');
        }
      }
    },
  },
  {
    description:
      '`TERRARIUM_MICROVM_HYPERVISOR=qemu` with `FIRECRACKER_BIN` or `JAILER_*` set in the environment draws a ' +
      'warning (they are ignored).',
    variables: [
      'TERRARIUM_MICROVM_HYPERVISOR',
      'FIRECRACKER_BIN',
      'JAILER_BIN',
      'JAILER_CHROOT_BASE_DIR',
      'JAILER_UID',
      'JAILER_GID',
    ],
    check(context, report) {
      if (context.value('TERRARIUM_MICROVM_HYPERVISOR') !== 'qemu') return;
      const set = (
        ['FIRECRACKER_BIN', 'JAILER_BIN', 'JAILER_CHROOT_BASE_DIR', 'JAILER_UID', 'JAILER_GID'] as const
      ).filter((name) => context.fromEnv(name));
      if (set.length > 0) {
        report.warn(`TERRARIUM_MICROVM_HYPERVISOR=qemu: ${set.join(', ')} ${set.length === 1 ? 'is' : 'are'} ignored.`);
      }
    },
  },
];
