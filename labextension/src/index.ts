/**
 * Wiring: one KernelLink per notebook kernel; `insert` messages become cells below their `%%ask` cell; the
 * Ask panel follows the current notebook. Works in JupyterLab 4 and Notebook 7 (no ILabShell needed; the
 * panel is only added where the shell has a left area).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { KernelLink } from './connection';
import { folderOf } from './files';
import { applyInsertion } from './insert';
import { IAskView, IPrices } from './model';
import { AskPanel, IPanelActions } from './panel';
import { IInsert, provenanceOf } from './protocol';

const PLUGIN_ID = 'ci-magic-labextension:plugin';
const OPEN_COMMAND = 'ci-magic:open-panel';

const askIcon = new LabIcon({
  name: 'ci-magic:ask',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
    'd="M4 4h16v11H8l-4 4zm4 4v2h8V8zm0 3v2h5v-2z"/></svg>'
});

class Links {
  private _links = new Map<Kernel.IKernelConnection, KernelLink>();
  private _prices: IPrices = { input: 0, output: 0 };

  constructor(
    private _tracker: INotebookTracker,
    private _onChange: () => void
  ) {}

  /** `notebookPath`: the session's path when the kernel is first seen; its folder is the kernel's cwd. */
  forKernel(kernel: Kernel.IKernelConnection | null | undefined, notebookPath?: string): KernelLink | null {
    if (!kernel) {
      return null;
    }
    let link = this._links.get(kernel);
    if (!link) {
      link = new KernelLink(kernel);
      link.model.setPrices(this._prices);
      if (notebookPath !== undefined) {
        link.model.setFolder(folderOf(notebookPath));
      }
      this._links.set(kernel, link);
      link.inserts.connect((l, msg) => this._insert(l, msg));
      kernel.disposed.connect(() => {
        this._links.delete(kernel);
        this._onChange();
      });
    }
    return link;
  }

  forPanel(panel: NotebookPanel | null): KernelLink | null {
    const session = panel?.sessionContext.session;
    // The server starts a kernel in the folder of its session's path: where the files an ask writes arrive.
    return panel ? this.forKernel(session?.kernel, session?.path ?? panel.context.path) : null;
  }

  setPrices(prices: IPrices): void {
    this._prices = prices;
    this._links.forEach(link => link.model.setPrices(prices));
  }

  /** Every notebook on this kernel gets a try: the anchor cell is in one of them (views may share a model). */
  private _insert(link: KernelLink, msg: IInsert): void {
    let found = false;
    this._tracker.forEach(panel => {
      const model = panel.content.model;
      if (found || !model || panel.sessionContext.session?.kernel !== link.kernel) {
        return;
      }
      const mode = msg.append ? 'append' : 'replace';
      const outcome = applyInsertion(model.sharedModel, msg.anchor_cell_id, msg.insertion_id, msg.cells, mode);
      found = outcome !== 'no-anchor';
    });
    if (!found) {
      link.model.setNotice(
        'An answer arrived but its %%ask cell is not in an open notebook; run the cell again to get it.'
      );
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'ci_magic: %%ask answers as real cells, and an Ask panel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settings: ISettingRegistry | null
  ) => {
    const current = (): KernelLink | null => links.forPanel(tracker.currentWidget);
    const actions: IPanelActions = {
      ask: (prompt, attempts, allow) => {
        const link = current();
        if (link && link.model.connection === 'ready') {
          link.send(link.model.beginAsk(prompt, attempts, allow));
        }
      },
      cancel: () => void current()?.interrupt(),
      insert: (ask: IAskView) => {
        if (insertBelowActiveCell(tracker.currentWidget, ask)) {
          current()?.model.markInserted(ask.id);
        }
      },
      toggleFrame: name => {
        const link = current();
        link?.send(link.model.toggleFrame(name));
      },
      selectAll: () => {
        const link = current();
        link?.send(link.model.selectAll());
      },
      loadExtension: () => {
        const kernel = tracker.currentWidget?.sessionContext.session?.kernel;
        kernel?.requestExecute({ code: '%load_ext ci_magic', silent: true, store_history: false });
      },
      openFile: path => {
        app.commands.execute('docmanager:open', { path }).catch(err => {
          current()?.model.setNotice(`Could not open ${path}: ${String(err)}`);
        });
      }
    };
    const panel = new AskPanel(actions);
    panel.id = 'ci-magic-panel';
    panel.title.icon = askIcon;
    panel.title.caption = 'Ask about your data (ci_magic)';

    const follow = (): void => {
      panel.model = current()?.model ?? null;
    };
    const links = new Links(tracker, follow);
    const watch = (nb: NotebookPanel): void => {
      nb.sessionContext.kernelChanged.connect(() => {
        links.forPanel(nb);
        follow();
      });
      links.forPanel(nb); // a notebook restored with a running kernel
    };
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_t, nb) => watch(nb));
    tracker.currentChanged.connect(follow);
    follow();

    try {
      app.shell.add(panel, 'left', { rank: 650 });
    } catch (err) {
      console.info('ci_magic: no left area in this shell; the Ask panel is not shown', err);
    }
    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show the Ask panel (ci_magic)',
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'ci_magic' });

    if (settings) {
      const apply = (s: ISettingRegistry.ISettings): void => {
        links.setPrices({
          input: Number(s.get('inputPricePerMillion').composite) || 0,
          output: Number(s.get('outputPricePerMillion').composite) || 0
        });
      };
      settings
        .load(PLUGIN_ID)
        .then(s => {
          apply(s);
          s.changed.connect(apply);
        })
        .catch(err => console.warn('ci_magic: settings not loaded', err));
    }
  }
};

/**
 * Panel results go below the active cell and replace nothing: they carry no anchor of their own, so a later
 * `%%ask` run never deletes them either. Returns whether the cells are in the notebook now.
 */
function insertBelowActiveCell(nb: NotebookPanel | null, ask: IAskView): boolean {
  const cell = nb?.content.activeCell;
  const model = nb?.content.model;
  if (!nb || !cell || !model || !ask.cells) {
    return false;
  }
  const insertionId = provenanceOf(ask.cells[0]?.metadata)?.insertion_id ?? ask.id;
  const outcome = applyInsertion(model.sharedModel, cell.model.id, insertionId, ask.cells, 'below');
  if (outcome === 'inserted') {
    nb.content.activeCellIndex = nb.content.activeCellIndex + 1;
  }
  return outcome !== 'no-anchor'; // 'duplicate': already there (this view or another inserted it)
}

export default plugin;
