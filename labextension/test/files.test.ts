import { describe, expect, it } from 'vitest';

import { baseName, downloadUrl, fileEntries, folderOf, formatSize, serverPath } from '../src/files';
import { IDeliveredFile } from '../src/protocol';

const file = (path: string, saved_as: string | null, bytes = 10, note: string | null = null): IDeliveredFile => ({
  path,
  bytes,
  sha256: 'ab'.repeat(32),
  saved_as,
  note
});

describe('folderOf', () => {
  it('is the notebook path without its name, relative to the server root', () => {
    expect(folderOf('analysis.ipynb')).toBe('');
    expect(folderOf('reports/q2/analysis.ipynb')).toBe('reports/q2');
    expect(folderOf('/reports/analysis.ipynb')).toBe('reports');
    expect(folderOf('RTC:reports/analysis.ipynb')).toBe('reports'); // a drive prefix is no folder
    expect(folderOf('my reports/./analysis.ipynb')).toBe('my reports');
  });
});

describe('serverPath', () => {
  it('joins the notebook folder and saved_as', () => {
    expect(serverPath('', 'summary.csv')).toBe('summary.csv');
    expect(serverPath('reports/q2', 'summary.csv')).toBe('reports/q2/summary.csv');
    expect(serverPath('reports', 'out/charts/revenue chart.png')).toBe('reports/out/charts/revenue chart.png');
    expect(serverPath('reports/', './q2 (2).csv')).toBe('reports/q2 (2).csv');
  });

  it('offers nothing for a file that was not copied, or a name outside the folder', () => {
    expect(serverPath('reports', null)).toBeNull();
    expect(serverPath('reports', '')).toBeNull();
    expect(serverPath('reports', '../secret.txt')).toBeNull();
    expect(serverPath('reports', 'a/../../b.txt')).toBeNull();
    expect(serverPath('reports', '/etc/passwd')).toBeNull();
    expect(serverPath('reports', '.')).toBeNull();
  });
});

describe('downloadUrl', () => {
  it("is the server's files/ URL, encoded segment by segment", () => {
    expect(downloadUrl('/', 'summary.csv')).toBe('/files/summary.csv');
    expect(downloadUrl('/', 'reports/revenue chart.png')).toBe('/files/reports/revenue%20chart.png');
    expect(downloadUrl('/user/ana/', 'reports/q2 (2).csv')).toBe('/user/ana/files/reports/q2%20(2).csv');
    // Non-ASCII as UTF-8; '#', '?', '%' and '&' are part of the name, never a fragment, query or escape.
    expect(downloadUrl('/', 'Umsätze/über #1?&100%.csv')).toBe(
      '/files/Ums%C3%A4tze/%C3%BCber%20%231%3F%26100%25.csv'
    );
    expect(downloadUrl('http://127.0.0.1:8888/lab-base/', 'a b/c.png')).toBe(
      'http://127.0.0.1:8888/lab-base/files/a%20b/c.png'
    );
  });

  it('ends with the encoded name of a file in a subfolder notebook', () => {
    const path = serverPath(folderOf('my reports/nb.ipynb'), 'revenue chart.png')!;
    expect(path).toBe('my reports/revenue chart.png');
    expect(downloadUrl('/', path)).toBe('/files/my%20reports/revenue%20chart.png');
    expect(baseName(path)).toBe('revenue chart.png');
  });
});

describe('formatSize', () => {
  it('writes sizes as cells.py does', () => {
    expect(formatSize(0)).toBe('0 bytes');
    expect(formatSize(812)).toBe('812 bytes');
    expect(formatSize(1023)).toBe('1,023 bytes');
    expect(formatSize(1536)).toBe('1.5 KB');
    expect(formatSize(2 * 1024 ** 2)).toBe('2.0 MB');
    expect(formatSize(3 * 1024 ** 4)).toBe('3072.0 GB');
  });
});

describe('fileEntries', () => {
  it('shows saved files by their new name with a server path, and the others with their note', () => {
    const files = [
      file('q2.csv', 'q2 (2).csv', 2048, "saved as 'q2 (2).csv': a file named 'q2.csv' already exists in your folder"),
      file('charts/r.png', 'charts/r.png', 100),
      file('big.bin', null, 0, 'not copied: over the size cap'),
      file('…', null, 0, '3 more files not copied')
    ];
    expect(fileEntries(files, 'reports')).toEqual([
      { name: 'q2 (2).csv', size: '2.0 KB', note: files[0].note, path: 'reports/q2 (2).csv' },
      { name: 'charts/r.png', size: '100 bytes', note: null, path: 'reports/charts/r.png' },
      { name: 'big.bin', size: null, note: 'not copied: over the size cap', path: null },
      { name: '…', size: null, note: '3 more files not copied', path: null }
    ]);
    expect(fileEntries([], '')).toEqual([]);
  });
});
