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
      const fresh = page.querySelector("main[data-live]");
      const current = document.querySelector("main[data-live]");
      if (!fresh || !current) return;
      const open = new Set([...current.querySelectorAll("details[open]")].map((d) => d.closest("tr")?.id));
      fresh.querySelectorAll("details").forEach((d) => { if (open.has(d.closest("tr")?.id)) d.open = true; });
      current.replaceChildren(...fresh.childNodes);
      main.dataset.refreshed = String(Number(main.dataset.refreshed || 0) + 1);
    }, 100);
  };
  const source = new EventSource(url);
  for (const kind of ["event", "run", "end"]) source.addEventListener(kind, refresh);
  if (main.dataset.live === "run") {
    // A run's status also changes without a new event in its log (it parks to sleep or to
    // wait on a hook): the runs list's stream says so.
    const statuses = new EventSource("/runs/stream");
    statuses.addEventListener("run", (message) => {
      try {
        if (JSON.parse(message.data).runId === main.dataset.runId) refresh();
      } catch (_) { /* not a run */ }
    });
    source.addEventListener("end", () => statuses.close());
  }
  source.addEventListener("end", () => source.close());
})();
