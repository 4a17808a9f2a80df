// Cairn's web UI: the theme toggle, and live pages. A page whose <main> has data-live listens
// to the API's Server-Sent Events (a run's stream and, for its status, the runs list's; or the
// runs list's) and, on each change,
// fetches itself again and swaps its <main>, keeping open <details> open. Without JavaScript
// every page works: forms post and redirect.
(() => {
  const root = document.documentElement;
  const toggle = document.getElementById("theme-toggle");
  const apply = (theme) => {
    if (theme) root.dataset.theme = theme;
    const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    if (toggle) {
      toggle.setAttribute("aria-pressed", String(dark));
      toggle.textContent = dark ? "Light theme" : "Dark theme";
    }
  };
  apply(localStorage.getItem("cairn-theme"));
  toggle?.addEventListener("click", () => {
    const dark = toggle.getAttribute("aria-pressed") === "true";
    const theme = dark ? "light" : "dark";
    localStorage.setItem("cairn-theme", theme);
    apply(theme);
  });

  const main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource) return;
  const url = main.dataset.live === "run" ? `/runs/${main.dataset.runId}/stream` : "/runs/stream";
  let queued = false;
  const refresh = () => {
    if (queued) return;
    queued = true;
    setTimeout(async () => {
      queued = false;
      const response = await fetch(location.href, { headers: { accept: "text/html" } });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      // (An ended run's page has no data-live: it is swapped in all the same, once.)
      const fresh = page.querySelector("main");
      const current = document.querySelector("main[data-live]");
      if (!fresh || !current) return;
      const open = new Set([...current.querySelectorAll("details[open]")].map((d) => d.closest("tr")?.id));
      fresh.querySelectorAll("details").forEach((d) => { if (open.has(d.closest("tr")?.id)) d.open = true; });
      // Keep the focus (keyboard users) on the same link across the swap.
      const focused = current.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
      current.replaceChildren(...fresh.childNodes);
      if (focused) current.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
      main.dataset.refreshed = String(Number(main.dataset.refreshed || 0) + 1);
    }, 100);
  };
  const source = new EventSource(url);
  for (const kind of ["event", "run", "end"]) source.addEventListener(kind, refresh);
  if (main.dataset.live === "run") {
    // A run's status also changes without a new event in its log (it parks to sleep or to
    // wait on a hook): the runs list's stream says so.
    const statuses = new EventSource("/runs/stream");
    // A change between this page's render and the stream's start is in no event: once the
    // stream listens, fetch the page again.
    statuses.addEventListener("open", refresh);
    statuses.addEventListener("run", (message) => {
      try {
        if (JSON.parse(message.data).runId === main.dataset.runId) refresh();
      } catch (_) { /* not a run */ }
    });
    source.addEventListener("end", () => statuses.close());
  }
  source.addEventListener("end", () => source.close());
})();

// Keys: `/` focuses the first filter, `j`/`k` move through the rows' links (Enter opens the
// focused one, as any link), `?` shows or hides the list of keys. Never while typing.
(() => {
  const help = document.createElement("dialog");
  help.id = "keys-help";
  help.setAttribute("aria-labelledby", "keys-help-title");
  help.innerHTML = '<h2 id="keys-help-title">Keys</h2><dl>' +
    "<dt><kbd>/</kbd></dt><dd>Go to the filters</dd>" +
    "<dt><kbd>j</kbd> / <kbd>k</kbd></dt><dd>Next / previous row</dd>" +
    "<dt><kbd>Enter</kbd></dt><dd>Open the row</dd>" +
    "<dt><kbd>?</kbd></dt><dd>Show or hide this list</dd></dl>" +
    '<form method="dialog"><button type="submit">Close</button></form>';
  document.body.append(help);
  const typing = (target) => target.closest("input, select, textarea, [contenteditable]");
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "?") {
      event.preventDefault();
      if (help.open) help.close(); else help.showModal();
      return;
    }
    if (event.key === "/") {
      const filter = document.querySelector("main form.filters select, main form.filters input");
      if (filter) { event.preventDefault(); filter.focus(); }
      return;
    }
    if (event.key !== "j" && event.key !== "k") return;
    const links = [...document.querySelectorAll("main table tbody tr td:first-child a, main table tbody tr th a")];
    if (!links.length) return;
    event.preventDefault();
    const at = links.indexOf(document.activeElement);
    const next = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
    links[next].focus();
    links[next].closest("tr")?.scrollIntoView({ block: "nearest" });
  });
})();

// Step windows: a run of many steps shows them 500 at a time. "Earlier steps" and "Load more"
// are plain links (without JavaScript, a page each); here they swap the page's <main> in
// place and push the URL, so Back shows the window before, and a live page's refetch (of
// location.href) keeps to the window shown.
(() => {
  const swap = async (href) => {
    const response = await fetch(href, { headers: { accept: "text/html" } });
    if (!response.ok) return false;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("main");
    const current = document.querySelector("main");
    if (!fresh || !current) return false;
    current.replaceChildren(...fresh.childNodes);
    document.title = page.title;
    return true;
  };
  document.addEventListener("click", async (event) => {
    const link = event.target.closest?.("a[data-steps-page]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    if (!(await swap(link.href))) {
      location.href = link.href;
      return;
    }
    history.pushState({ steps: true }, "", link.href);
    const heading = document.getElementById("steps-heading");
    heading?.scrollIntoView();
    heading?.focus({ preventScroll: true });
  });
  window.addEventListener("popstate", () => {
    if (document.getElementById("steps-heading")) swap(location.href);
  });
})();
