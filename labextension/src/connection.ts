/**
 * One kernel's end of the `ci_magic` comm: says hello, re-connects after `%load_ext` and restarts, validates
 * what arrives, feeds the model and hands `insert` messages to whoever places cells.
 */

import { CommsOverSubshells, Kernel, KernelMessage as KM } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { CIMagicModel } from './model';
import { FrontendMessage, hello, IInsert, parseKernelMessage, ProtocolError, TARGET_NAME } from './protocol';

export class KernelLink implements IDisposable {
  readonly model: CIMagicModel;
  private _kernel: Kernel.IKernelConnection;
  private _comm: Kernel.IComm | null = null;
  private _inserts = new Signal<this, IInsert>(this);
  private _ranCode = false;
  private _disposed = false;

  constructor(kernel: Kernel.IKernelConnection, model: CIMagicModel = new CIMagicModel()) {
    this._kernel = kernel;
    this.model = model;
    // `announce` is how a kernel that just ran `%load_ext ci_magic` asks us to say hello again.
    kernel.registerCommTarget(TARGET_NAME, this._onKernelComm);
    kernel.statusChanged.connect(this._onStatus, this);
    kernel.iopubMessage.connect(this._onIopub, this);
    kernel.disposed.connect(() => this.dispose());
    this.connect();
  }

  get kernel(): Kernel.IKernelConnection {
    return this._kernel;
  }

  get inserts(): ISignal<this, IInsert> {
    return this._inserts;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Open a comm with `hello`. A kernel without ci_magic loaded closes it at once: "not loaded". */
  connect(): void {
    if (this._disposed || !this._kernel.handleComms) {
      return;
    }
    this._closeComm();
    const comm = this._kernel.createComm(TARGET_NAME);
    // On the main shell, not a subshell: an ask must be cancellable with a kernel interrupt (which only
    // reaches the main thread), and it changes the user's namespace, so it must not run beside a cell.
    comm.commsOverSubshells = CommsOverSubshells.Disabled;
    comm.onMsg = msg => this._receive(msg.content.data);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this.model.setConnection('not-loaded');
      }
    };
    this._comm = comm;
    this.model.setConnection('connecting');
    comm.open(hello() as unknown as JSONObject);
  }

  /** Send a request; false when there is no connection (the views disable their buttons then). */
  send(msg: FrontendMessage): boolean {
    if (!this._comm || this._comm.isDisposed || this.model.connection !== 'ready') {
      return false;
    }
    this._comm.send(msg as unknown as JSONObject);
    return true;
  }

  /** Cancel: the kernel turns the interrupt into ci_magic.errors.Cancelled inside the running ask. */
  async interrupt(): Promise<void> {
    this.model.markCancelling();
    await this._kernel.interrupt();
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._kernel.removeCommTarget(TARGET_NAME, this._onKernelComm);
    this._kernel.statusChanged.disconnect(this._onStatus, this);
    this._kernel.iopubMessage.disconnect(this._onIopub, this);
    this._closeComm();
    Signal.clearData(this);
  }

  private _onKernelComm = (comm: Kernel.IComm, msg: KM.ICommOpenMsg): void => {
    comm.commsOverSubshells = CommsOverSubshells.Disabled; // a one-shot message needs no subshell
    try {
      if (parseKernelMessage(msg.content.data).type === 'announce') {
        this.connect();
      }
    } catch (err) {
      this._protocolError(err);
    }
  };

  private _receive(data: unknown): void {
    let msg;
    try {
      msg = parseKernelMessage(data);
    } catch (err) {
      this._protocolError(err);
      return;
    }
    if (msg.type === 'insert') {
      this._inserts.emit(msg);
      return;
    }
    this.model.handle(msg);
    if (msg.type === 'ready') {
      this.refresh();
    }
  }

  /** Re-read the DataFrames and the context preview (after the user ran code, or an ask brought values). */
  refresh(): void {
    if (this.send(this.model.requestFrames())) {
      this.send(this.model.requestContext());
    }
  }

  private _onStatus(_kernel: Kernel.IKernelConnection, status: KM.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      // The new kernel process has no ci_magic until `%load_ext` runs again (which announces itself).
      this._comm = null;
      this.model.setConnection(status === 'dead' ? 'no-kernel' : 'not-loaded');
    } else if (status === 'idle') {
      this.model.kernelIdle();
      if (this._ranCode) {
        this._ranCode = false;
        this.refresh();
      }
    }
  }

  private _onIopub(_kernel: Kernel.IKernelConnection, msg: KM.IIOPubMessage): void {
    // Only user code can change the DataFrames; our own requests make the kernel busy too, so refreshing on
    // every idle would loop forever.
    if (msg.header.msg_type === 'execute_input') {
      this._ranCode = true;
    }
    // The events of an ask the kernel sends to another page's comm (this page's previous life, before a reload):
    // followed until our own comm is ready (the kernel then replays the asks from their start).
    if (msg.header.msg_type === 'comm_msg' && this.model.connection !== 'ready') {
      const content = msg.content as KM.ICommMsgMsg['content'];
      if (content.comm_id !== this._comm?.commId) {
        try {
          const parsed = parseKernelMessage(content.data);
          if (parsed.type === 'event') {
            this.model.adopt(parsed);
          }
        } catch {
          // not ours, or another version's: ignored
        }
      }
    }
  }

  private _protocolError(err: unknown): void {
    const message = err instanceof ProtocolError ? err.message : String(err);
    console.error('ci_magic:', message);
    this.model.setConnection('error', message);
  }

  private _closeComm(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      comm.close();
    }
  }
}
