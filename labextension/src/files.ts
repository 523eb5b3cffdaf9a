/**
 * Files an ask's working code wrote, as the panel lists them: where each one is on the Jupyter server (for
 * `docmanager:open`) and the URL that downloads it. Pure functions, unit-tested; no state.
 *
 * `saved_as` is relative to the user's folder, which is the kernel's working directory: the folder of the
 * notebook the kernel was started for. Server paths are relative to the server's root and '/'-separated.
 */

import { URLExt } from '@jupyterlab/coreutils';

import type { IDeliveredFile } from './protocol';

/** What one row of the panel's file list shows. */
export interface IFileEntry {
  name: string; // saved_as, or where the code wrote it when the file was not copied
  size: string | null; // null when nothing is known (a file that was not copied, or the "… more" line)
  note: string | null;
  path: string | null; // on the server, relative to its root; null when there is nothing to open
}

function segments(path: string): string[] | null {
  const parts = path.split('/').filter(p => p !== '' && p !== '.');
  return parts.includes('..') ? null : parts;
}

/** The folder of a notebook, relative to the server root: '' for a notebook at the root. */
export function folderOf(notebookPath: string): string {
  // A drive prefix ("RTC:reports/a.ipynb") names no folder of the server.
  const parts = segments(notebookPath.replace(/^[A-Za-z0-9_-]+:/, '')) ?? [];
  return parts.slice(0, -1).join('/');
}

/**
 * Where a delivered file is on the server: the notebook's folder joined with `saved_as`. Null when the file
 * was not copied, or when `saved_as` is absolute or climbs out of the folder (never the case for ci_magic's
 * own names; nothing is offered then rather than a path elsewhere).
 */
export function serverPath(folder: string, savedAs: string | null): string | null {
  if (!savedAs || savedAs.startsWith('/')) {
    return null;
  }
  const base = segments(folder);
  const name = segments(savedAs);
  if (base === null || name === null || name.length === 0) {
    return null;
  }
  return [...base, ...name].join('/');
}

/** The server's `files/` URL for a server path, each segment URL-encoded (spaces, '#', '?', non-ASCII). */
export function downloadUrl(baseUrl: string, path: string): string {
  return URLExt.join(baseUrl, 'files', URLExt.encodeParts(path));
}

/** The name a download is saved under: the file's own name, without its folders. */
export function baseName(path: string): string {
  const parts = path.split('/').filter(p => p !== '');
  return parts[parts.length - 1] ?? path;
}

/** As ci_magic/notebook/cells.py writes sizes: "812 bytes", "1.5 KB", "2.0 MB". */
export function formatSize(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes.toLocaleString('en-US')} bytes`;
  }
  let value = bytes;
  let unit = 'KB';
  for (unit of ['KB', 'MB', 'GB']) {
    value /= 1024;
    if (value < 1024) {
      break;
    }
  }
  return `${value.toFixed(1)} ${unit}`;
}

export function fileEntries(files: readonly IDeliveredFile[], folder: string): IFileEntry[] {
  return files.map(f => {
    const path = serverPath(folder, f.saved_as);
    const copied = f.saved_as !== null;
    return {
      name: copied ? (f.saved_as as string) : f.path,
      size: copied || f.bytes > 0 ? formatSize(f.bytes) : null,
      note: f.note,
      path
    };
  });
}
