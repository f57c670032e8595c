/**
 * Status-bar item fed by GET /api/sidecars/status (the server extension of this package):
 * memory, GPU memory and walltime with their limits, colours near the limits, a tooltip, and
 * notifications at the walltime warnings, at 90 % memory and when the server is stopped.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { Announced, Status, levelOf, notices, statusText, tooltip } from './format';

const POLL_MS = 5000;

class SidecarsStatus extends Widget {
  constructor() {
    super();
    this.addClass('jp-SidecarsStatus');
    this.node.textContent = 'Mem: …';
  }

  display(status: Status): void {
    this.node.textContent = statusText(status);
    this.node.title = tooltip(status);
    this.node.dataset.level = levelOf(status);
  }
}

async function fetchStatus(settings: ServerConnection.ISettings): Promise<Status | null> {
  const url = URLExt.join(settings.baseUrl, 'api/sidecars/status');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    return null;
  }
  return (await response.json()) as Status;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterhub-sidecars-status:plugin',
  description: 'Memory, GPU memory and walltime of this server in the status bar.',
  autoStart: true,
  requires: [IStatusBar],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar) => {
    const widget = new SidecarsStatus();
    statusBar.registerStatusItem(plugin.id, { item: widget, align: 'left', rank: 100 });
    const settings = ServerConnection.makeSettings();
    let announced: Announced = { keys: [], memoryHigh: false };
    let last: Status | null = null;

    const tick = async (): Promise<void> => {
      let status: Status | null = null;
      try {
        status = await fetchStatus(settings);
      } catch {
        status = null;
      }
      if (status === null) {
        // The server went away right after its walltime or idle limit ended: say so once.
        const w = last?.walltime;
        const soon = (left: number | undefined): boolean =>
          left !== undefined && left < POLL_MS / 1000 + 5;
        const reason = soon(w?.remaining) ? 'walltime' : soon(w?.idle?.remaining) ? 'idle' : null;
        if (w && reason) {
          const [found, next] = notices(
            { ...last!, walltime: { ...w, state: 'stopping', stop_reason: reason } }, announced);
          found.forEach(n => Notification.error(n.message, { autoClose: false }));
          announced = next;
        }
        return;
      }
      last = status;
      widget.display(status);
      const [found, next] = notices(status, announced);
      announced = next;
      for (const notice of found) {
        const options = { autoClose: notice.kind === 'error' ? (false as const) : 20000 };
        if (notice.kind === 'error') {
          Notification.error(notice.message, options);
        } else {
          Notification.warning(notice.message, options);
        }
      }
    };
    void tick();
    window.setInterval(() => void tick(), POLL_MS);
  }
};

export default plugin;
