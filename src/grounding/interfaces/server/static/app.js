// The page over grounding's HTTP API: plain JavaScript, nothing fetched from elsewhere.
const $ = (id) => document.getElementById(id);
let classifyImage = null;

function key() { return localStorage.getItem("grounding-api-key") || ""; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(path, options = {}) {
  const headers = key() ? { "X-API-Key": key() } : {};
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) $("key-box").hidden = false;
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body && body.detail;
    const text = Array.isArray(detail) ? detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ") : detail;
    throw new Error(text || `the server answered ${response.status}`);
  }
  showError("");
  return body;
}

function form(fields) {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) data.append(name, value);
  return data;
}

async function guarded(work) {
  try { await work(); } catch (e) { showError(e.message); }
}

function setClassifyImage(file) {
  classifyImage = file;
  $("classify-preview").src = URL.createObjectURL(file);
  $("classify-preview").hidden = false;
}

async function classify() {
  if (!classifyImage) throw new Error("pick or drop an image first");
  const answer = await call("/classify", { method: "POST", body: form({ images: classifyImage, labels: $("labels").value, top_k: 5 }) });
  const bars = $("bars");
  bars.replaceChildren();
  answer.results[0].top.forEach((item, rank) => {
    const li = document.createElement("li");
    li.className = rank === 0 ? "top" : "";
    const name = document.createElement("span"); name.className = "name"; name.textContent = item.label;
    const track = document.createElement("span");
    const bar = document.createElement("span"); bar.className = "bar"; bar.style.display = "block";
    bar.style.width = `${Math.max(1, item.probability * 100)}%`;
    track.append(bar);
    const p = document.createElement("span"); p.textContent = `${(item.probability * 100).toFixed(1)}%`;
    li.append(name, track, p);
    bars.append(li);
  });
}

function showHits(answer) {
  const grid = $("grid");
  grid.replaceChildren();
  for (const hit of answer.hits) {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = `${hit.score.toFixed(3)} ${hit.caption || hit.name}`;
    if (hit.thumbnail) {
      const img = document.createElement("img");
      img.alt = hit.name;
      img.src = hit.thumbnail;
      if (key()) fetch(hit.thumbnail, { headers: { "X-API-Key": key() } }).then((r) => r.blob()).then((b) => { img.src = URL.createObjectURL(b); });
      figure.append(img);
      figure.title = "search with this image";
      figure.onclick = () => guarded(async () => {
        const blob = await (await fetch(hit.thumbnail, { headers: key() ? { "X-API-Key": key() } : {} })).blob();
        showHits(await call("/search", { method: "POST", body: form({ image: new File([blob], hit.name, { type: "image/jpeg" }), k: 20 }) }));
      });
    }
    figure.append(caption);
    grid.append(figure);
  }
  $("search-hint").textContent = answer.hits.length ? `${answer.hits.length} nearest to “${answer.query}”` : "nothing found";
}

async function searchWords(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) throw new Error("type a word to search for");
  showHits(await call(`/search?q=${encodeURIComponent(q)}&k=20`));
}

async function ground(event) {
  event.preventDefault();
  const file = $("ground-file").files[0];
  if (!file) throw new Error("pick an image to look in");
  const answer = await call("/ground", { method: "POST", body: form({ image: file, phrase: $("phrase").value }) });
  $("heatmap").src = answer.heatmap;
  $("heatmap").hidden = false;
}

async function detect(event) {
  event.preventDefault();
  const file = $("detect-file").files[0];
  if (!file) throw new Error("pick an image to look in");
  const answer = await call("/detect", { method: "POST", body: form({ image: file, queries: $("detect-queries").value }) });
  $("detections").src = answer.image;
  $("detections").hidden = false;
  $("detect-hint").textContent = answer.detections.length
    ? answer.detections.map((d) => `${d.query} ${(d.score * 100).toFixed(0)}%`).join(", ")
    : "nothing over the threshold";
}

async function ask(event) {
  event.preventDefault();
  const file = $("ask-file").files[0];
  if (!file) throw new Error("pick an image to ask about");
  const answer = await call("/vqa", { method: "POST", body: form({ image: file, question: $("question").value }) });
  $("answer").textContent = answer.answers.map((a) => `${a.answer} ${(a.probability * 100).toFixed(1)}%`).join(", ");
}

async function caption() {
  const file = $("ask-file").files[0];
  if (!file) throw new Error("pick an image to caption");
  $("answer").textContent = (await call("/caption", { method: "POST", body: form({ image: file }) })).caption;
}

async function start() {
  $("api-key").value = key();
  $("api-key").onchange = () => { localStorage.setItem("grounding-api-key", $("api-key").value); start(); };
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) setClassifyImage(e.dataTransfer.files[0]); };
  $("classify-file").onchange = (e) => { if (e.target.files[0]) setClassifyImage(e.target.files[0]); };
  $("classify-run").onclick = () => guarded(classify);
  $("search-form").onsubmit = (e) => guarded(() => searchWords(e));
  $("ground-form").onsubmit = (e) => guarded(() => ground(e));
  $("ask-form").onsubmit = (e) => guarded(() => ask(e));
  $("detect-form").onsubmit = (e) => guarded(() => detect(e));
  $("caption-run").onclick = () => guarded(caption);
  await guarded(async () => {
    const info = await call("/info");
    $("model-info").textContent = `${info.model} · ${info.precision} on ${info.device}` +
      (info.index ? ` · index of ${info.index.count} ${info.index.kind}s` : " · no index");
    if (!info.index) $("search-hint").textContent = "start the server with --index to search";
    $("ask").hidden = !info.vqa && !info.caption;
    $("detect").hidden = !info.detect;
  });
}

start();
