/**
 * Checks and filters tar archives crossing the VM boundary: only regular files and directories with relative,
 * normalised names inside the destination; links, devices and FIFOs are refused.
 */
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { extract, pack } from 'tar-stream';
import { badRequest } from './errors.js';

const ALLOWED = new Set(['file', 'contiguous-file', 'directory']);

function safeName(name: string): string | undefined {
  if (name.includes('\0') || posix.isAbsolute(name)) return undefined;
  const normal = posix.normalize(name);
  if (normal === '..' || normal.startsWith('../')) return undefined;
  return normal;
}

/** Validates an uploaded archive; throws a 400 naming the first offending entry. Returns the entry count. */
export async function checkUploadArchive(archive: Buffer): Promise<{ entries: number; bytes: number }> {
  const ex = extract();
  let entries = 0;
  let bytes = 0;
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      entries++;
      const problem = !ALLOWED.has(header.type ?? 'file')
        ? `"${header.name}" is a ${header.type}: links, devices and FIFOs are refused`
        : safeName(header.name) === undefined
          ? `"${header.name}" is not a relative path inside the destination`
          : undefined;
      if (problem) {
        ex.destroy(badRequest(`the archive is refused: ${problem}`));
        return;
      }
      bytes += header.size ?? 0;
      stream.on('end', next);
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', (err) =>
      reject(err instanceof Error && 'statusCode' in err ? err : badRequest(`not a valid tar archive: ${err.message}`)),
    );
  });
  Readable.from([archive]).pipe(ex);
  await done;
  if (entries === 0 && archive.length > 0) throw badRequest('not a valid tar archive: no entries');
  return { entries, bytes };
}

/** Re-packs a downloaded archive without links, devices and FIFOs; returns it and the names left out. */
export async function filterDownloadArchive(archive: Buffer): Promise<{ archive: Buffer; skipped: string[] }> {
  const ex = extract();
  const out = pack();
  const skipped: string[] = [];
  const chunks: Buffer[] = [];
  out.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const finished = new Promise<void>((resolve, reject) => {
    out.on('end', resolve);
    out.on('error', reject);
    ex.on('error', reject);
  });
  ex.on('entry', (header, stream, next) => {
    if (!ALLOWED.has(header.type ?? 'file') || safeName(header.name) === undefined) {
      skipped.push(header.name);
      stream.on('end', next);
      stream.resume();
      return;
    }
    stream.pipe(out.entry(header, next));
  });
  ex.on('finish', () => out.finalize());
  Readable.from([archive]).pipe(ex);
  await finished;
  return { archive: Buffer.concat(chunks), skipped };
}
