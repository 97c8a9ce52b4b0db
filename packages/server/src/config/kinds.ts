/**
 * Value kinds: a zod schema that parses one raw environment string into a typed value, plus the words used to
 * describe it in the docs (`type`) and in error messages (`expected`).
 *
 * Every schema takes the raw string (never empty: the loader treats empty strings as unset) and either returns the
 * parsed value or reports one issue whose message says what is wrong, e.g. "is not a whole number".
 */
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';

export interface Kind<T> {
  /** Parses the raw (non-empty) environment string. */
  readonly schema: z.ZodType<T, string>;
  /** Short description for the docs, e.g. "integer 1–65535" or "one of `a`, `b`". */
  readonly type: string;
  /** What a valid value looks like, for error messages, e.g. "an integer from 1 to 65535". */
  readonly expected: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = (problem: string): Parsed<never> => ({ ok: false, problem });

/** A kind whose parsing is a function from the raw string to a value or a problem. */
function custom<T>(type: string, expected: string, parse: (raw: string) => Parsed<T>): Kind<T> {
  const schema = z.string().transform((raw, ctx): T => {
    const result = parse(raw);
    if (result.ok) return result.value;
    ctx.addIssue({ code: 'custom', message: result.problem });
    return z.NEVER;
  });
  return { schema, type, expected };
}

const range = (min: number, max: number): string => (max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `${min}–${max}`);

/** A whole number within [min, max]. */
export function integer(min: number, max: number = Number.MAX_SAFE_INTEGER): Kind<number> {
  const expected =
    max === Number.MAX_SAFE_INTEGER ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`;
  const schema = z
    .string()
    .trim()
    .regex(/^[+-]?\d+$/, 'is not a whole number')
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, `is below the minimum (${min})`)
        .max(max, `is above the maximum (${max})`)
        .refine(Number.isSafeInteger, 'is too large'),
    );
  return { schema, type: `integer ${range(min, max)}`, expected };
}

/** A decimal number; `min` is exclusive when `exclusiveMin` is set (e.g. "> 0"). */
export function decimal(options: { min: number; exclusiveMin?: boolean; max?: number }): Kind<number> {
  const { min, exclusiveMin = false, max } = options;
  const low = exclusiveMin ? `> ${min}` : `≥ ${min}`;
  const type =
    max === undefined ? `number ${low}` : exclusiveMin ? `number ${low} and ≤ ${max}` : `number ${min}–${max}`;
  const expected =
    max === undefined
      ? `a number ${exclusiveMin ? 'greater than' : 'of at least'} ${min}`
      : `a number ${exclusiveMin ? 'greater than' : 'from'} ${min} ${exclusiveMin ? 'and at most' : 'to'} ${max}`;
  let number = z.number();
  number = exclusiveMin
    ? number.gt(min, `must be greater than ${min}`)
    : number.gte(min, `is below the minimum (${min})`);
  if (max !== undefined) number = number.lte(max, `is above the maximum (${max})`);
  const schema = z
    .string()
    .trim()
    .regex(/^[+-]?(\d+(\.\d*)?|\.\d+)$/, 'is not a number')
    .transform(Number)
    .pipe(number);
  return { schema, type, expected };
}

/** 'true' / 'false' / '1' / '0' (case-insensitive). */
export const boolean: Kind<boolean> = {
  schema: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(['true', 'false', '1', '0'], { error: 'is not a boolean' }))
    .transform((value) => value === 'true' || value === '1'),
  type: 'boolean (`true`/`false`/`1`/`0`)',
  expected: "'true', 'false', '1' or '0'",
};

/** Exactly one of the listed values. `aliases` are accepted too and mapped to a listed value. */
export function oneOf<const V extends string>(values: readonly [V, ...V[]], aliases: Record<string, V> = {}): Kind<V> {
  const list = values.map((v) => `'${v}'`).join(', ');
  return custom(`one of ${values.map((v) => `\`${v}\``).join(', ')}`, `one of ${list}`, (raw) => {
    const value = raw.trim();
    if ((values as readonly string[]).includes(value)) return ok(value as V);
    const alias = aliases[value];
    if (alias !== undefined) return ok(alias);
    return fail('is not an allowed value');
  });
}

/** Free text, optionally with a minimum length and a pattern. Not trimmed unless `trim` is set. */
export function text(
  options: { minLength?: number; pattern?: RegExp; patternExpected?: string; trim?: boolean; type?: string } = {},
): Kind<string> {
  const { minLength = 1, pattern, patternExpected, trim = true } = options;
  const expected =
    patternExpected ?? (minLength > 1 ? `a string of at least ${minLength} characters` : 'a non-empty string');
  const type = options.type ?? (minLength > 1 ? `string (≥ ${minLength} characters)` : 'string');
  return custom(type, expected, (raw) => {
    const value = trim ? raw.trim() : raw;
    if (value.length < minLength) {
      return fail(`is too short (${value.length} character${value.length === 1 ? '' : 's'}, need ${minLength})`);
    }
    if (pattern && !pattern.test(value)) return fail('has the wrong format');
    return ok(value);
  });
}

/** A secret string: never trimmed (spaces may be part of it), at least `minLength` characters. */
export function secretText(minLength: number): Kind<string> {
  return text({
    minLength,
    trim: false,
    type: minLength > 1 ? `secret string (≥ ${minLength} characters)` : 'secret string',
  });
}

/** An absolute URL with one of the given schemes (default http and https). Kept as the string given. */
export function url(
  options: {
    protocols?: readonly string[];
    trailingSlash?: boolean;
    /** Also accept http:// for loopback hosts (a local provider in tests and development); rules.ts forbids it in production. */
    loopbackHttp?: boolean;
  } = {},
): Kind<string> {
  const protocols = options.protocols ?? ['http', 'https'];
  const schemes = protocols.map((p) => `${p}://`).join(' or ');
  const loopback = options.loopbackHttp && !protocols.includes('http');
  const expected = `a URL starting with ${schemes}${loopback ? ' (or http:// on 127.0.0.1, ::1 or localhost)' : ''}${options.trailingSlash ? ' and ending with /' : ''}`;
  const type = `URL (${protocols.join(', ')}${loopback ? '; http on loopback' : ''}${options.trailingSlash ? '; trailing /' : ''})`;
  return custom(type, expected, (raw) => {
    const value = raw.trim();
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      return fail('is not a valid URL');
    }
    const scheme = parsed.protocol.replace(/:$/, '');
    if (!protocols.includes(scheme) && !(loopback && scheme === 'http' && isLoopbackHost(parsed.hostname)))
      return fail(`uses the scheme '${scheme}'`);
    if (options.trailingSlash && !value.endsWith('/')) return fail('does not end with /');
    return ok(value);
  });
}

/** 127.0.0.1 (any 127/8), ::1 or localhost: traffic that never leaves the machine. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

const HOSTNAME =
  /^(?=.{1,253}\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

/** An IPv4/IPv6 address or a DNS host name. */
export const hostOrIp: Kind<string> = custom(
  'IP address or host name',
  'an IP address or a host name (no scheme, no port)',
  (raw) => {
    const value = raw.trim();
    const unbracketed = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
    if (isIP(unbracketed) !== 0) return ok(unbracketed);
    if (HOSTNAME.test(value)) return ok(value);
    return fail('is neither an IP address nor a host name');
  },
);

/** A PostgreSQL host: an IP address, a host name, or (as libpq allows) the absolute path of a socket directory. */
export const postgresHost: Kind<string> = custom(
  'host name, IP address or socket directory',
  'a host name, an IP address or the absolute path of a Unix-socket directory',
  (raw) => {
    const value = raw.trim();
    if (value.startsWith('/')) return ok(value);
    if (isIP(value) !== 0 || HOSTNAME.test(value)) return ok(value);
    return fail('is neither a host name, an IP address nor an absolute socket directory');
  },
);

/** An IPv4 or IPv6 address. */
export const ipAddress: Kind<string> = custom('IP address', 'an IPv4 or IPv6 address', (raw) => {
  const value = raw.trim();
  return isIP(value) !== 0 ? ok(value) : fail('is not an IP address');
});

/** Expands a leading `~` to the home directory. */
export function expandHome(value: string, home: string = homedir()): string {
  if (value === '~') return home;
  if (value.startsWith('~/')) return `${home}${value.slice(1)}`;
  return value;
}

/** A file-system path. `~` is expanded; `absolute` rejects relative paths; `resolve` makes them absolute. */
export function filePath(options: { absolute?: boolean; resolve?: boolean } = {}): Kind<string> {
  const type = options.absolute ? 'absolute path' : 'path';
  const expected = options.absolute ? 'an absolute path (starting with /)' : 'a file-system path';
  return custom(type, expected, (raw) => {
    const value = expandHome(raw.trim());
    if (options.absolute && !isAbsolute(value)) return fail('is not an absolute path');
    return ok(options.resolve ? resolve(value) : value);
  });
}

function splitList(raw: string, separator: string): string[] {
  return raw
    .split(separator)
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** A comma-separated list (items trimmed, empty items dropped). */
export const commaList: Kind<readonly string[]> = custom('comma-separated list', 'a comma-separated list', (raw) =>
  ok(splitList(raw, ',')),
);

function compile(pattern: string, anchored: boolean): RegExp | string {
  try {
    return new RegExp(anchored ? `^(?:${pattern})$` : pattern);
  } catch (error) {
    return (error as Error).message;
  }
}

/** A comma-separated list of regular expressions, each compiled to match a whole name (`^(?:…)$`). */
export const regexList: Kind<readonly RegExp[]> = custom(
  'comma-separated list of regexes (each must match the whole name)',
  'a comma-separated list of valid JavaScript regular expressions',
  (raw) => {
    const result: RegExp[] = [];
    for (const item of splitList(raw, ',')) {
      const compiled = compile(item, true);
      if (typeof compiled === 'string') return fail(`contains an invalid regex '${item}' (${compiled})`);
      result.push(compiled);
    }
    return ok(result);
  },
);

/** One regular expression (not anchored: it matches anywhere unless it uses ^ and $). */
export const regex: Kind<RegExp> = custom('regex', 'a valid JavaScript regular expression', (raw) => {
  const compiled = compile(raw.trim(), false);
  return typeof compiled === 'string' ? fail(`is not a valid regex (${compiled})`) : ok(compiled);
});

export const SSH_KEY_SEPARATOR = ' ||| ';
const SSH_PUBLIC_KEY =
  /^(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\s+[A-Za-z0-9+/]+={0,3}(?:\s+.*)?$/;

/** SSH public keys separated by ` ||| ` (space, three pipes, space). */
export const sshPublicKeyList: Kind<readonly string[]> = custom(
  'SSH public keys separated by ` ||| `',
  "SSH public keys (e.g. 'ssh-ed25519 AAAA… user@host') separated by ' ||| '",
  (raw) => {
    const keys = splitList(raw, SSH_KEY_SEPARATOR.trim());
    for (const [index, key] of keys.entries()) {
      if (!SSH_PUBLIC_KEY.test(key)) return fail(`item ${index + 1} is not an SSH public key`);
    }
    return ok(keys);
  },
);

/** `key=value,key=value` pairs; neither keys nor values may contain '=' or ','. */
export const keyValuePairs: Kind<Readonly<Record<string, string>>> = custom(
  'comma-separated `key=value` pairs',
  "comma-separated key=value pairs, without '=' or ',' inside keys or values",
  (raw) => {
    const result: Record<string, string> = {};
    for (const item of splitList(raw, ',')) {
      const parts = item.split('=');
      if (parts.length !== 2) return fail(`has an entry '${item}' that is not a single key=value pair`);
      const key = parts[0]!.trim();
      const value = parts[1]!.trim();
      if (key === '') return fail(`has an entry '${item}' with an empty key`);
      if (Object.hasOwn(result, key)) return fail(`repeats the key '${key}'`);
      result[key] = value;
    }
    return ok(result);
  },
);

/** An e-mail address. */
export const email: Kind<string> = {
  schema: z
    .string()
    .trim()
    .pipe(z.email({ error: 'is not an e-mail address' })),
  type: 'e-mail address',
  expected: 'an e-mail address',
};

/** Base64-encoded data (e.g. a PEM certificate as in a kubeconfig's `*-data` fields). */
export const base64Data: Kind<string> = custom('base64', 'base64-encoded data', (raw) => {
  const value = raw.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || value.length % 4 !== 0) return fail('is not valid base64');
  return ok(value);
});

/** A lower-case machine name: letters, digits, '.', '-' and '_'. */
export const machineName: Kind<string> = custom(
  'lower-case name',
  "a lower-case name made of a–z, 0–9, '.', '-' and '_'",
  (raw) => {
    const value = raw.trim();
    if (value !== value.toLowerCase()) return fail('is not lower-case');
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(value)) return fail('contains characters other than a–z, 0–9, ".", "-", "_"');
    return ok(value);
  },
);

/** Turns an arbitrary host name into a valid machine name. */
export function toMachineName(hostname: string): string {
  const cleaned = hostname
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '');
  return cleaned === '' ? 'localhost' : cleaned;
}

export const awsRegion: Kind<string> = text({
  pattern: /^[a-z]{2}(?:-[a-z]+)+-\d+$/,
  patternExpected: 'an AWS region name such as us-west-2',
  type: 'AWS region',
});

export const awsAccessKeyId: Kind<string> = text({
  pattern: /^[A-Z0-9]{16,128}$/,
  patternExpected: 'an AWS access key ID (16+ upper-case letters and digits, e.g. AKIA…)',
  type: 'AWS access key ID',
});

const NAME_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REGISTRY = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::\\d+)?/)?';
const REPOSITORY = `${REGISTRY}${NAME_COMPONENT}(?:/${NAME_COMPONENT})*`;

/** A Docker image reference: `[registry/]name[:tag][@sha256:digest]`. */
export const dockerImage: Kind<string> = text({
  pattern: new RegExp(`^${REPOSITORY}(?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`),
  patternExpected: 'a Docker image reference such as python:3.11-slim or registry.example.com/team/image:tag',
  type: 'Docker image reference',
});

/** A Docker repository name without tag: `[registry/]name`. */
export const dockerRepository: Kind<string> = text({
  pattern: new RegExp(`^${REPOSITORY}$`),
  patternExpected: 'a Docker repository name without a tag, such as registry.example.com/terrarium/images',
  type: 'Docker repository name',
});

/** A Docker object name (network, context). */
export const dockerObjectName: Kind<string> = text({
  pattern: /^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$/,
  patternExpected: "a Docker name: letters, digits, '_', '.', '+' and '-', starting with a letter or digit",
  type: 'Docker name',
});

/** One or more Docker platforms, `os/arch[/variant]`, comma-separated. */
export const dockerPlatform: Kind<string> = text({
  pattern: /^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?(?:,[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?)*$/,
  patternExpected: 'a platform such as linux/amd64 or linux/arm64/v8 (several separated by commas)',
  type: 'Docker platform (`os/arch[/variant]`)',
});

/** A Docker daemon address as the Docker CLI accepts it in DOCKER_HOST. */
export const dockerHost: Kind<string> = url({ protocols: ['unix', 'tcp', 'ssh', 'npipe', 'http', 'https'] });

/** A Git host prefix: a URL (https://, ssh://, …) or scp-style `user@host:`. */
export const gitHost: Kind<string> = custom(
  'Git host (URL or `user@host:`)',
  'a Git host such as https://github.com, https://TOKEN@github.com or git@github.com:',
  (raw) => {
    const value = raw.trim().replace(/\/+$/, '');
    if (/^[\w.-]+@[\w.-]+:?$/.test(value)) return ok(value);
    try {
      const parsed = new URL(value);
      if (['http:', 'https:', 'ssh:', 'git:', 'file:'].includes(parsed.protocol)) return ok(value);
    } catch {
      // fall through
    }
    return fail('is neither a URL nor user@host:');
  },
);

/** `owner/repository`. */
export const repoName: Kind<string> = text({
  pattern: /^[\w.-]+\/[\w.-]+$/,
  patternExpected: 'owner/repository, e.g. METR/mp4-tasks',
  type: '`owner/repo`',
});

/** A Kubernetes namespace (an RFC 1123 label). */
export const k8sNamespace: Kind<string> = text({
  pattern: /^(?=.{1,63}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/,
  patternExpected: "a Kubernetes namespace: up to 63 lower-case letters, digits and '-'",
  type: 'Kubernetes namespace',
});

/** A Kubernetes object name (an RFC 1123 subdomain). */
export const k8sObjectName: Kind<string> = text({
  pattern: /^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/,
  patternExpected: "a Kubernetes object name: lower-case letters, digits, '-' and '.'",
  type: 'Kubernetes object name',
});
