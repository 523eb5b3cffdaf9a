/**
 * Protocol v1 between this extension and `ci_magic/bridge.py`, over a comm on the `ci_magic` target.
 *
 * Declared once here and once in Python (bridge.py's FRONTEND_MESSAGES / KERNEL_MESSAGES); a Python test
 * checks that every message type named there appears here. Every message carries `v`.
 */

export const PROTOCOL_VERSION = 1;
export const TARGET_NAME = 'ci_magic';

/** A JSON object as nbformat stores it (cells, outputs, metadata). */
export type JSONDict = { [key: string]: unknown };

export interface IFrameInfo {
  name: string;
  kind: string; // DataFrame | Series
  shape: number[];
}

export interface IUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  estimated: boolean;
}

export type EventKind =
  | 'context'
  | 'model_start'
  | 'token'
  | 'model_done'
  | 'code'
  | 'no_code'
  // data: {ops}: outputs of the running code as they arrive (ci_magic/sandbox/live.py), replayed by applyOps
  | 'output'
  | 'exec_done'
  | 'retry'
  | 'answer_start' // data: {best_effort: boolean}: the answer in words (or a failed ask's format step) begins
  | 'answer' // data: {text: string | null, best_effort: boolean, prompt_tokens, completion_tokens}
  | 'vote' // data: {chosen_attempt: number | null, votes: number[]} after extra samples (--samples)
  // data: {ok, attempts, prompt_tokens, completion_tokens, warnings: string[], files: IDeliveredFile[],
  //        answer: string | null, doubt: string | null, best_effort: string | null}
  | 'done';

// ---- frontend → kernel -----------------------------------------------------------------------------------

export interface IHello {
  v: 1;
  type: 'hello';
}
export interface IListFrames {
  v: 1;
  type: 'list_frames';
}
export interface IContextRequest {
  v: 1;
  type: 'context';
  frames: string[] | null;
}
export interface IAskRequest {
  v: 1;
  type: 'ask';
  ask_id: string;
  prompt: string;
  frames: string[] | null; // null: every DataFrame in the notebook
  attempts: number | null; // null: the kernel's %config Ask.attempts
  allow?: string[] | null; // hosts the code may reach by name (%%ask --allow); null: %config Ask.allow_hosts
}
export type FrontendMessage = IHello | IListFrames | IContextRequest | IAskRequest;

// ---- kernel → frontend -----------------------------------------------------------------------------------

export interface IAnnounce {
  v: 1;
  type: 'announce';
}
export interface IReady {
  v: 1;
  type: 'ready';
  version: string;
}
export interface IEventMessage {
  v: 1;
  type: 'event';
  ask_id: string;
  origin: 'panel' | 'cell';
  kind: EventKind;
  attempt: number;
  data: JSONDict;
}
export interface IInsert {
  v: 1;
  type: 'insert';
  insertion_id: string;
  anchor_cell_id: string;
  cells: JSONDict[];
  append?: boolean; // an agent's call (%ask_serve): after the cells already appended to the anchor
}
export interface IFrames {
  v: 1;
  type: 'frames';
  frames: IFrameInfo[];
}
export interface IContextReply {
  v: 1;
  type: 'context';
  text: string;
  tokens: number;
  frames: string[];
}
/**
 * A file the working code wrote (`DeliveredFile` in ci_magic/core/results.py). `path`: where the code wrote
 * it, relative to the sandbox's working folder; `saved_as`: its name in the user's folder (the notebook's
 * folder, i.e. the kernel's working directory), '/'-separated, null when it was not copied; `note`: why it
 * has another name, or why it was not copied.
 */
export interface IDeliveredFile {
  path: string;
  bytes: number;
  sha256: string;
  saved_as: string | null;
  note: string | null;
}

export interface IResult {
  v: 1;
  type: 'result';
  ask_id: string;
  ok: boolean;
  cells: JSONDict[];
  usage: IUsage;
  attempts: number;
  notes: string[];
  files?: IDeliveredFile[]; // optional within v1: kernels before files came back do not send it
}
export interface IErrorMessage {
  v: 1;
  type: 'error';
  ask_id: string | null; // null: a request (frames, context) failed, not an ask
  message: string;
}
export type KernelMessage =
  | IAnnounce
  | IReady
  | IEventMessage
  | IInsert
  | IFrames
  | IContextReply
  | IResult
  | IErrorMessage;

/**
 * The fields each kernel message must have, with their JSON types: what `parseKernelMessage` checks. A field
 * added to protocol v1 later is optional: its types include 'undefined'.
 */
const KERNEL_FIELDS: { [K in KernelMessage['type']]: { [field: string]: string } } = {
  announce: {},
  ready: { version: 'string' },
  event: { ask_id: 'string', origin: 'string', kind: 'string', attempt: 'number', data: 'object' },
  insert: { insertion_id: 'string', anchor_cell_id: 'string', cells: 'array', append: 'boolean|undefined' },
  frames: { frames: 'array' },
  context: { text: 'string', tokens: 'number', frames: 'array' },
  result: {
    ask_id: 'string',
    ok: 'boolean',
    cells: 'array',
    usage: 'object',
    attempts: 'number',
    notes: 'array',
    files: 'array|undefined'
  },
  error: { ask_id: 'string|null', message: 'string' }
};

function jsonType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  return Array.isArray(value) ? 'array' : typeof value;
}

export class ProtocolError extends Error {}

/**
 * Validate a comm payload from the kernel. Throws ProtocolError with a message fit for the UI, so a kernel
 * running another ci_magic version is reported instead of half-working.
 */
export function parseKernelMessage(data: unknown): KernelMessage {
  if (jsonType(data) !== 'object') {
    throw new ProtocolError(`ci_magic sent ${jsonType(data)}, not a message object`);
  }
  const msg = data as JSONDict;
  if (msg.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `The kernel's ci_magic speaks protocol v${String(msg.v)}, this extension v${PROTOCOL_VERSION}: ` +
        'install matching versions and reload the page.'
    );
  }
  const type = msg.type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(KERNEL_FIELDS, type)) {
    throw new ProtocolError(`Unknown ci_magic message type ${JSON.stringify(type)}`);
  }
  const fields = KERNEL_FIELDS[type as KernelMessage['type']];
  for (const [field, expected] of Object.entries(fields)) {
    const actual = jsonType(msg[field]);
    if (!expected.split('|').includes(actual)) {
      throw new ProtocolError(`ci_magic '${type}' message: ${field} is ${actual}, expected ${expected}`);
    }
  }
  return msg as unknown as KernelMessage;
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/**
 * The well-formed entries of a `files` list (from `result`, or the `done` event's data); anything else is
 * dropped, so a kernel of another ci_magic version can at worst show fewer files, never break the panel.
 */
export function parseFiles(value: unknown): IDeliveredFile[] {
  if (!Array.isArray(value)) {
    return [];
  }
  const files: IDeliveredFile[] = [];
  for (const item of value) {
    if (jsonType(item) !== 'object') {
      continue;
    }
    const f = item as JSONDict;
    if (typeof f.path !== 'string' || !f.path) {
      continue;
    }
    const bytes = typeof f.bytes === 'number' && Number.isFinite(f.bytes) && f.bytes >= 0 ? f.bytes : 0;
    const savedAs = optionalString(f.saved_as);
    files.push({
      path: f.path,
      bytes,
      sha256: typeof f.sha256 === 'string' ? f.sha256 : '',
      saved_as: savedAs === '' ? null : savedAs,
      note: optionalString(f.note)
    });
  }
  return files;
}

export function hello(): IHello {
  return { v: PROTOCOL_VERSION, type: 'hello' };
}

export function listFrames(): IListFrames {
  return { v: PROTOCOL_VERSION, type: 'list_frames' };
}

export function contextRequest(frames: string[] | null): IContextRequest {
  return { v: PROTOCOL_VERSION, type: 'context', frames };
}

export function askRequest(
  askId: string,
  prompt: string,
  frames: string[] | null,
  attempts: number | null,
  allow: string[] | null = null
): IAskRequest {
  return { v: PROTOCOL_VERSION, type: 'ask', ask_id: askId, prompt, frames, attempts, allow };
}

/** Provenance that `ci_magic/cells.py` writes into `metadata.ci_magic` of generated cells. */
export interface ICellProvenance {
  insertion_id?: string;
  anchor_cell_id?: string | null;
  appended_to?: string | null; // the %ask_serve cell an agent's call was added below
  role?: 'code' | 'record' | 'agent';
  agent?: string; // the agent that ran it (its MCP client's name)
}

export const METADATA_KEY = 'ci_magic';

export function provenanceOf(metadata: unknown): ICellProvenance | null {
  if (jsonType(metadata) !== 'object') {
    return null;
  }
  const value = (metadata as JSONDict)[METADATA_KEY];
  return jsonType(value) === 'object' ? (value as ICellProvenance) : null;
}

/** The panel's "allowed hosts" field: names separated by commas or spaces; empty means "as configured". */
export function parseHosts(text: string): string[] | null {
  const hosts = text.split(/[\s,]+/).filter(h => h.length > 0);
  return hosts.length ? hosts : null;
}
