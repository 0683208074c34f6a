// nav.ts - moving between addresses inside the UI.  main.ts installs the router;
// pages call navigate() (a history entry, so back and forward work).
let router: () => void = () => undefined;

export function setRouter(r: () => void): void { router = r; }

/** Goes to an address inside the UI (a new history entry unless replace). */
export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  router();
}
