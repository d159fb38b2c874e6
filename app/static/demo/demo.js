// The s3gate demo: every call goes through the browser client the service ships.
// Built with DOM APIs and textContent only: file names are user input.
import { createClient } from "../client/s3gate.js";

const TOKEN_KEY = "s3gate.demo.token";
const $ = (selector) => document.querySelector(selector);

let token = sessionStorage.getItem(TOKEN_KEY) ?? "";
const client = createClient({ token: () => token });
// Open share panels by file id, `{panel, reload}`: kept across refreshes (so a created URL
// stays on screen), their lists reloaded.
const sharePanels = new Map();

// `s3gate dev` links to /demo/#token=...: a fragment never reaches a server or its logs.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  useToken(fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
$("#token").value = token;
showTokenState();

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken($("#token").value.trim());
  refresh();
});
$("#refresh").addEventListener("click", () => refresh());
$("#files").addEventListener("change", (event) => {
  const files = Array.from(event.target.files);
  event.target.value = ""; // picking the same file again (to resume) fires change again
  for (const file of files) startUpload(file);
});

function useToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
  showTokenState();
}

function showTokenState() {
  $("#token-state").textContent = token ? "token set" : "no token yet";
}

function startUpload(file) {
  const row = $("#upload-row").content.firstElementChild.cloneNode(true);
  const bar = row.querySelector("progress");
  const percent = row.querySelector(".percent");
  const state = row.querySelector(".state");
  const cancel = row.querySelector(".cancel");
  row.querySelector(".name").textContent = file.name;
  row.dataset.filename = file.name;
  $("#uploads").prepend(row);

  const controller = new AbortController();
  cancel.addEventListener("click", () =>
    controller.abort(new DOMException("cancelled", "AbortError")),
  );
  const concurrency = Math.max(1, Math.min(16, Number($("#concurrency").value) || 4));
  const setState = (text, kind) => {
    state.textContent = text;
    state.className = `state ${kind ?? ""}`;
    row.dataset.state = kind ?? "running";
  };
  setState("uploading");
  client
    .upload(file, {
      signal: controller.signal,
      concurrency,
      onProgress: ({ fraction }) => {
        bar.setAttribute("value", String(fraction)); // an attribute, so observers see each step
        percent.textContent = `${Math.floor(fraction * 100)}%`;
      },
    })
    .then((done) => {
      row.dataset.fileId = done.id;
      setState(`${done.status}`, "done");
      cancel.remove();
      refresh();
    })
    .catch((error) => {
      cancel.remove();
      if (error?.name === "AbortError")
        setState("cancelled: pick the file again to resume", "failed");
      else setState(describe(error), "failed");
      refresh();
    });
}

function describe(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error);
}

async function refresh() {
  const listError = $("#list-error");
  if (!token) return;
  try {
    const page = await client.list({ limit: 50 });
    listError.hidden = true;
    const shareable = new Set(page.items.filter(isShareable).map((file) => file.id));
    for (const id of sharePanels.keys()) if (!shareable.has(id)) sharePanels.delete(id);
    const rows = page.items.flatMap((file) => {
      const open = sharePanels.get(file.id);
      open?.reload();
      return open ? [fileRow(file), open.panel] : [fileRow(file)];
    });
    $("#file-rows").replaceChildren(...rows);
  } catch (error) {
    listError.textContent = describe(error);
    listError.hidden = false;
  }
}

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.fileId = file.id;
  const cells = [
    file.filename,
    file.content_type,
    formatBytes(file.size),
    file.status,
    formatDate(file.created_at),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  row.cells[3].className = `status status-${file.status}`;
  const actions = document.createElement("td");
  actions.className = "actions";
  if (file.status === "available") actions.append(button("Download", () => downloadFile(file)));
  if (isShareable(file)) {
    const share = button("Share", () => toggleShare(file, row, share));
    share.setAttribute("aria-controls", `share-${file.id}`);
    share.setAttribute("aria-expanded", String(sharePanels.has(file.id)));
    actions.append(share);
  }
  actions.append(button("Delete", () => removeFile(file)));
  row.append(actions);
  return row;
}

function isShareable(file) {
  return file.status === "available";
}

function toggleShare(file, row, toggle) {
  const open = sharePanels.get(file.id);
  if (open) {
    open.panel.remove();
    sharePanels.delete(file.id);
  } else {
    const opened = sharePanel(file);
    sharePanels.set(file.id, opened);
    row.after(opened.panel);
    opened.panel.querySelector("select").focus();
  }
  toggle.setAttribute("aria-expanded", String(sharePanels.has(file.id)));
}

/** A file's share links and grants, to create, list and revoke: `{panel, reload}`. */
function sharePanel(file) {
  const panel = $("#share-panel").content.firstElementChild.cloneNode(true);
  const find = (selector) => panel.querySelector(selector);
  panel.id = `share-${file.id}`;
  panel.dataset.fileId = file.id;
  panel.setAttribute("aria-label", `Sharing ${file.filename}`);
  const shareError = find(".share-error");
  const attempt = async (action) => {
    shareError.hidden = true;
    try {
      await action();
    } catch (error) {
      shareError.textContent = describe(error);
      shareError.hidden = false;
    }
  };
  const revoker = (label, revoke, reload) => {
    const element = button("Revoke", () => attempt(async () => revoke().then(reload)));
    element.setAttribute("aria-label", label);
    return element;
  };

  const showLinks = () =>
    attempt(async () => {
      const entries = (await client.links(file.id)).map((link) => {
        const uses = `${link.downloads}${link.max_downloads == null ? "" : `/${link.max_downloads}`}`;
        const text = `${link.state}: ${uses} downloads, until ${formatDate(link.expires_at)}`;
        const revoke = () => client.revokeLink(file.id, link.id);
        return listItem(
          text,
          link.state === "active" && revoker(`Revoke link: ${text}`, revoke, showLinks),
        );
      });
      find(".link-list").replaceChildren(...entries);
    });
  const showGrants = () =>
    attempt(async () => {
      const entries = (await client.grants(file.id)).map((grant) => {
        const who = grant.subject ?? `group ${grant.group}`;
        const until = grant.expires_at ? `, until ${formatDate(grant.expires_at)}` : "";
        const text = `${who}: ${grant.permission}${until}${grant.active ? "" : " (expired)"}`;
        const revoke = () => client.revokeGrant(file.id, grant.id);
        return listItem(text, revoker(`Revoke grant: ${who}`, revoke, showGrants));
      });
      find(".grant-list").replaceChildren(...entries);
    });

  find(".link-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const { expires_in: expiresIn, max_downloads: maxDownloads } = event.target.elements;
    attempt(async () => {
      const link = await client.createLink(file.id, {
        expiresIn: Number(expiresIn.value),
        maxDownloads: maxDownloads.value ? Number(maxDownloads.value) : null,
      });
      find(".link-url").value = link.url;
      find(".copy-state").textContent = "";
      find(".link-created").hidden = false;
      await showLinks();
    });
  });
  find(".copy").addEventListener("click", async () => {
    const field = find(".link-url");
    field.select(); // if the clipboard is refused, the URL is selected for Ctrl+C
    try {
      await navigator.clipboard.writeText(field.value);
      find(".copy-state").textContent = "copied";
    } catch {
      find(".copy-state").textContent = "selected: press Ctrl+C to copy";
    }
  });
  find(".grant-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const { subject, permission } = form.elements;
    attempt(async () => {
      await client.share(file.id, { subject: subject.value.trim(), permission: permission.value });
      form.reset();
      await showGrants();
    });
  });
  const reload = () => Promise.all([showLinks(), showGrants()]);
  reload();
  return { panel, reload };
}

function listItem(text, action) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.textContent = text;
  item.append(label);
  if (action) item.append(action);
  return item;
}

function formatDate(value) {
  return new Date(value).toLocaleString();
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

async function downloadFile(file) {
  try {
    const link = await client.download(file.id);
    location.assign(link.url); // served as an attachment: the browser saves it
  } catch (error) {
    alert(describe(error));
  }
}

async function removeFile(file) {
  try {
    if (file.status === "pending") await client.abandon(file.id);
    else await client.deleteFile(file.id);
  } catch (error) {
    alert(describe(error));
  }
  refresh();
}

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

refresh();
