// Tributary dashboard: a single page app over the server's JSON API (client/dashboard/server.py).
// Plain JS, no dependencies: hash routes, exact wei arithmetic with BigInt, hand-drawn SVG plots,
// live updates by polling /api/version (the page redraws, never reloads), and a voucher button
// for an EIP-1193 wallet (window.ethereum) when one is present. Read-only without a wallet.
"use strict";

const ETH = "0x0000000000000000000000000000000000000000";
const main = document.getElementById("main");
const state = { version: null, route: null, sort: {}, busy: false, renders: 0 };
window.__dashboard = state; // tests read renders/loads from here

// ---------------------------------------------------------------------------- formatting
function esc(v) {
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
    c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
// Exact decimal of a wei amount in units of 10^18 (ETH or an 18-decimal token): no float.
function units(wei) {
  const w = BigInt(wei || "0"), neg = w < 0n, a = neg ? -w : w;
  const i = a / 10n ** 18n, f = (a % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
  return (neg ? "-" : "") + i.toString() + (f ? "." + f : "");
}
function tokName(t) { return !t || t === ETH ? "ETH" : "tok " + t.slice(0, 8) + "…"; }
function wei(v, token) {
  return `<span class="wei" data-wei="${esc(v)}" title="${esc(v)} wei">${esc(units(v))} ${esc(tokName(token))}</span>`;
}
function fracNum(s) { if (!s) return null; const [n, d] = String(s).split("/"); return Number(n) / Number(d || 1); }
// for reading only: the exact fraction is in the cell's title
const NF = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 5 });
function fracTxt(s) { const x = fracNum(s); return x === null ? "–" : NF.format(x); }
function pct(acc) { return acc ? (100 * acc.correct / acc.total).toFixed(2) + "%" : "n/a"; }
function short(h, n = 10) { return h ? esc(h.slice(0, n)) + "…" + esc(h.slice(-4)) : "–"; }
function hash(h) { return h ? `<span class="hash" title="${esc(h)}">${esc(h)}</span>` : "–"; }
function addr(a) { return a ? `<a class="mono addr" href="#/trainer/${esc(a)}" title="${esc(a)}">${short(a, 8)}</a>` : "–"; }
function verdict(v) { return `<span class="pill v-${esc(String(v).replace(/ /g, "-"))}">${esc(v)}</span>`; }
function card(k, v, attrs = "") { return `<div class="card" ${attrs}><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`; }
function txt(v) { return `<span class="hash">${esc(v === null || v === undefined || v === "" ? "–" : v)}</span>`; }

async function api(path) {
  const r = await fetch("/api/" + path, { cache: "no-store" });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : {};
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// ---------------------------------------------------------------------------- plots (SVG)
const W = 380, H = 190, PAD = { l: 46, r: 10, t: 10, b: 28 };
function axes(xs, ymax, yfmt, ylabel) {
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  let s = `<line x1="${PAD.l}" y1="${PAD.t + ih}" x2="${PAD.l + iw}" y2="${PAD.t + ih}" stroke="#b9c0cc"/>`;
  for (let k = 0; k <= 4; k++) {
    const y = PAD.t + ih - ih * k / 4;
    s += `<line x1="${PAD.l}" y1="${y}" x2="${PAD.l + iw}" y2="${y}" stroke="#eef0f4"/>` +
         `<text x="${PAD.l - 4}" y="${y + 3}" text-anchor="end">${esc(yfmt(ymax * k / 4))}</text>`;
  }
  xs.forEach((x, i) => {
    const cx = PAD.l + (xs.length === 1 ? iw / 2 : iw * (i + 0.5) / xs.length);
    s += `<text x="${cx}" y="${H - 12}" text-anchor="middle">${esc(x)}</text>`;
  });
  s += `<text x="${PAD.l + iw / 2}" y="${H - 1}" text-anchor="middle">round</text>`;
  return { s, iw, ih, label: ylabel };
}
function lineChart(id, title, xs, ys, ymax, yfmt, color, tips) {
  const a = axes(xs, ymax, yfmt);
  const pts = ys.map((y, i) => y === null ? null :
    [PAD.l + (xs.length === 1 ? a.iw / 2 : a.iw * (i + 0.5) / xs.length), PAD.t + a.ih - a.ih * (ymax ? y / ymax : 0)]);
  const path = pts.filter(Boolean).map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
  let dots = "";
  pts.forEach((p, i) => { if (p) dots += `<circle cx="${p[0].toFixed(1)}" cy="${p[1].toFixed(1)}" r="3.5" fill="${color}" data-round="${esc(xs[i])}"><title>${esc(tips[i])}</title></circle>`; });
  return `<div class="plot" id="${id}"><h3>${esc(title)}</h3><svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${a.s}<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>${dots}</svg></div>`;
}
function budgetChart(rounds, token) {
  const xs = rounds.map(r => r.round);
  const tot = rounds.map(r => BigInt(r.paid) + BigInt(r.carried));
  const maxw = tot.reduce((m, v) => v > m ? v : m, 1n);
  const ymax = Number(maxw) / 1e18;
  const a = axes(xs, ymax, v => v.toPrecision(3));
  const bw = Math.max(4, Math.min(36, a.iw / Math.max(1, xs.length) * 0.6));
  let bars = "";
  rounds.forEach((r, i) => {
    const cx = PAD.l + (xs.length === 1 ? a.iw / 2 : a.iw * (i + 0.5) / xs.length);
    // heights by exact integer ratio (scaled to 1e6 before turning into a float)
    const hp = a.ih * Number(BigInt(r.paid) * 1000000n / maxw) / 1e6;
    const hc = a.ih * Number(BigInt(r.carried) * 1000000n / maxw) / 1e6;
    const y0 = PAD.t + a.ih;
    bars += `<rect x="${(cx - bw / 2).toFixed(1)}" y="${(y0 - hp).toFixed(1)}" width="${bw.toFixed(1)}" height="${hp.toFixed(1)}" fill="var(--paid)" data-round="${r.round}" data-kind="paid" data-wei="${esc(r.paid)}"><title>round ${r.round}: paid ${esc(units(r.paid))} ${tokName(token)}</title></rect>` +
            `<rect x="${(cx - bw / 2).toFixed(1)}" y="${(y0 - hp - hc).toFixed(1)}" width="${bw.toFixed(1)}" height="${hc.toFixed(1)}" fill="var(--carried)" data-round="${r.round}" data-kind="carried" data-wei="${esc(r.carried)}"><title>round ${r.round}: carried ${esc(units(r.carried))} ${tokName(token)}</title></rect>`;
  });
  return `<div class="plot" id="plot-budget"><h3>Budget per round (${esc(tokName(token))}) <span class="legend"><span class="sw-paid"></span>paid<span class="sw-carried"></span>carried</span></h3><svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="budget paid vs carried">${a.s}${bars}</svg></div>`;
}

// ---------------------------------------------------------------------------- sortable tables
// cols: [{key, label, num, html(row), sort(row)}]; the sort state survives live redraws.
function table(id, cols, rows, empty = "none") {
  const st = state.sort[id];
  let data = rows.slice();
  if (st) {
    const c = cols.find(c => c.key === st.key);
    if (c) {
      const val = r => (c.sort ? c.sort(r) : r[c.key]);
      data.sort((a, b) => { const x = val(a), y = val(b);
        const d = (typeof x === "bigint" || typeof y === "bigint") ? (BigInt(x) < BigInt(y) ? -1 : BigInt(x) > BigInt(y) ? 1 : 0)
          : (x === null ? -Infinity : x) < (y === null ? -Infinity : y) ? -1 : (x === null ? -Infinity : x) > (y === null ? -Infinity : y) ? 1 : 0;
        return st.dir * d; });
    }
  }
  const head = cols.map(c => `<th data-key="${c.key}" class="${c.num ? "num " : ""}${c.nosort ? "" : "sortable"} ${st && st.key === c.key ? (st.dir > 0 ? "asc" : "desc") : ""}">${esc(c.label)}</th>`).join("");
  const body = data.length ? data.map(r => `<tr>${cols.map(c => `<td class="${c.num ? "num" : ""}" data-col="${c.key}">${c.html ? c.html(r) : esc(r[c.key])}</td>`).join("")}</tr>`).join("")
    : `<tr><td colspan="${cols.length}" class="muted">${esc(empty)}</td></tr>`;
  return `<table id="${id}" data-sortable="1"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
main.addEventListener("click", ev => {
  const th = ev.target.closest("th.sortable");
  if (!th) return;
  const id = th.closest("table").id, key = th.dataset.key, cur = state.sort[id];
  state.sort[id] = { key, dir: cur && cur.key === key ? -cur.dir : 1 };
  render(true);
});

// ---------------------------------------------------------------------------- pages
async function pageJobs() {
  const { jobs } = await api("jobs");
  const cols = [
    { key: "job", label: "job", num: 1, html: j => `<a href="#/job/${j.job}">${j.job}</a>` },
    { key: "name", label: "name" },
    { key: "owner", label: "owner", html: j => addr(j.owner) },
    { key: "token", label: "token", html: j => esc(tokName(j.token)) },
    { key: "budget", label: "budget", num: 1, html: j => wei(j.budget, j.token), sort: j => BigInt(j.budget) },
    { key: "paid", label: "paid", num: 1, html: j => wei(j.paid, j.token), sort: j => BigInt(j.paid) },
    { key: "carried", label: "carried", num: 1, html: j => wei(j.carried, j.token), sort: j => BigInt(j.carried) },
    { key: "rounds_done", label: "rounds done", num: 1, html: j => `${j.rounds_done} / ${esc(j.rounds)}` },
    { key: "state", label: "state" },
    { key: "rule", label: "rule", html: j => esc(j.rule || "–") },
    { key: "shards", label: "shard commitments", nosort: 1, html: j => j.shard_commitments ?
        `<details><summary>${j.shard_commitments.length}</summary>${j.shard_commitments.map(hash).join("<br>")}</details>` : "–" },
  ];
  return `<h1>Jobs</h1><p class="muted">From the job_opened and round_closed notices; state from inspect; rule and shard commitments from the spec in the content store.</p>` +
    table("jobs-table", cols, jobs, "no job yet");
}

async function pageJob(id) {
  const j = await api("job/" + id);
  const tok = j.token, R = j.rounds, xs = R.map(r => r.round);
  let h = `<h1>Job ${j.job}${j.name ? " · " + esc(j.name) : ""} <span class="pill">${esc(j.state)}</span></h1>` +
    `<div class="cards">${card("owner", addr(j.owner))}${card("budget", wei(j.budget, tok), 'id="job-budget"')}` +
    `${card("paid by rounds", wei(j.paid, tok), 'id="job-paid"')}${card("rounds", `${R.length} / ${esc(j.rounds_planned)}`)}` +
    `${card("rule", esc(j.rule || "–"))}` +
    (j.live && j.live.current && j.state === "open" ? card("current round", `${j.live.current.round}: ${j.live.current.commits} commits, ${j.live.current.reveals} reveals`, 'id="job-live"') : "") + `</div>`;
  if (R.length) {
    const acc = R.map(r => r.accuracy ? r.accuracy.correct / r.accuracy.total * 100 : null);
    const lrs = R.map(r => fracNum(r.learning_rate));
    const lmax = Math.max(...lrs.filter(x => x !== null), 1e-9) * 1.15;
    h += `<div class="plots">` +
      lineChart("plot-accuracy", "Accuracy on the round's validation shard (%)", xs, acc, 100, v => v.toFixed(0), "#1c8a4b",
        R.map(r => `round ${r.round}: ${r.accuracy ? r.accuracy.correct + "/" + r.accuracy.total + " = " + pct(r.accuracy) : "n/a"}`)) +
      budgetChart(R, tok) +
      lineChart("plot-lr", "Learning rate per round", xs, lrs, lmax, v => v.toPrecision(2), "#7b4bd6",
        R.map(r => `round ${r.round}: ${r.learning_rate || "n/a"}`)) + `</div>`;
  }
  h += `<h2>Rounds</h2>` + table("rounds-table", [
    { key: "round", label: "round", num: 1 },
    { key: "accuracy", label: "accuracy", num: 1, html: r => r.accuracy ? `${r.accuracy.correct}/${r.accuracy.total} = ${pct(r.accuracy)}` : "n/a", sort: r => r.accuracy ? r.accuracy.correct / r.accuracy.total : null },
    { key: "budget", label: "budget", num: 1, html: r => wei(r.budget, tok), sort: r => BigInt(r.budget) },
    { key: "paid", label: "paid", num: 1, html: r => wei(r.paid, tok), sort: r => BigInt(r.paid) },
    { key: "carried", label: "carried", num: 1, html: r => wei(r.carried, tok), sort: r => BigInt(r.carried) },
    { key: "learning_rate", label: "learning rate", num: 1, html: r => `<span title="${esc(r.learning_rate)}">${fracTxt(r.learning_rate)}</span>`, sort: r => fracNum(r.learning_rate) },
    { key: "fallback", label: "fallback", html: r => esc(r.fallback || "–") },
    { key: "model", label: "model", nosort: 1, html: r => `<a href="/api/model/${j.job}/${r.round}" download>download</a> <span class="muted">${esc(r.model_bytes)} B</span>` },
  ], R, "no round closed yet");
  const trs = [];
  R.forEach(r => r.trainers.forEach(t => trs.push(Object.assign({ round: r.round }, t))));
  h += `<h2>Trainers per round</h2>` + table("trainers-table", [
    { key: "round", label: "round", num: 1 },
    { key: "address", label: "trainer", html: t => addr(t.address) },
    { key: "verdict", label: "verdict", html: t => verdict(t.verdict) },
    { key: "contribution", label: "contribution", num: 1, html: t => `<span title="${esc(t.contribution)}">${fracTxt(t.contribution)}</span>`, sort: t => fracNum(t.contribution) },
    { key: "reward", label: "reward", num: 1, html: t => wei(t.reward, tok), sort: t => BigInt(t.reward) },
    { key: "reason", label: "reason", html: t => esc(t.reason || "") },
    { key: "note", label: "note", html: t => `<span class="muted">${esc(t.note || "")}</span>` },
    { key: "trace", label: "trace", nosort: 1, html: t => `<a href="#/trace/${j.job}/${t.round}/${esc(t.address)}">trace</a>` },
  ], trs, "no trainer yet");
  h += `<h2>Rejected updates</h2>` + table("rejected-table", [
    { key: "round", label: "round", num: 1 },
    { key: "address", label: "trainer", html: t => addr(t.address) },
    { key: "where", label: "refused in" },
    { key: "reason", label: "reason" },
    { key: "input_index", label: "input", num: 1 },
  ], j.rejected, "no update was rejected");
  h += `<h2>Model hash chain</h2><ol class="trace" id="hash-chain">` + j.hash_chain.map(m =>
    `<li><span class="step">${m.round === null ? "initial model" : "after round " + m.round}</span> <span class="muted">(${esc(m.source)}, output ${m.output_index})</span>` +
    `<dl class="kv"><dt>keccak</dt><dd>${hash(m.model_hash)}</dd><dt>cid</dt><dd>${txt(m.model_cid)}</dd>` +
    `<dt>download</dt><dd><a href="/api/model/${j.job}/${m.round === null ? "initial" : m.round}" download>model bytes, verified against the hash</a></dd></dl></li>`).join("") + `</ol>`;
  h += `<h2>Spec</h2><dl class="kv"><dt>spec cid</dt><dd>${txt(j.spec_cid)}</dd><dt>aggregation</dt><dd><code>${esc(JSON.stringify(j.aggregation))}</code></dd>` +
       `<dt>windows (s)</dt><dd><code>${esc(JSON.stringify(j.windows))}</code></dd><dt>shard commitments</dt><dd>${(j.shard_commitments || []).map(hash).join("<br>") || "–"}</dd>` +
       `<dt>public validation shard</dt><dd>${txt(j.public_validation)}</dd></dl>`;
  return h;
}

function voucherCell(v) {
  let s = `<span class="pill state-${esc(v.state.replace(/ /g, "-"))}">${esc(v.state)}</span>`;
  if (v.tx) s += ` ${hash(v.tx)}`;
  if (v.state === "executable" && window.ethereum) s += ` <button class="exec" data-index="${v.index}">execute with wallet</button>`;
  return s;
}

async function pageTrainer(a) {
  const t = await api("trainer/" + a);
  const bal = t.balances === null ? "unavailable" : Object.keys(t.balances).length ?
    Object.entries(t.balances).map(([k, v]) => wei(v, k)).join("<br>") : wei("0", ETH);
  let h = `<h1>Trainer <span class="mono">${esc(t.address)}</span></h1><div class="cards">` +
    card("in-app balance", bal, 'id="trainer-balance"') +
    card("earned (notices)", Object.keys(t.earned).length ? Object.entries(t.earned).map(([k, v]) => wei(v, k)).join("<br>") : wei("0", ETH), 'id="trainer-earned"') +
    card("rounds", String(t.rounds.length)) + card("vouchers", String(t.vouchers.length)) + `</div>`;
  const io = x => x ? `<span class="${x.status === "ACCEPTED" ? "ok" : "bad"}" title="${esc(x.reason || x.status)}">input ${x.input_index}</span> <span class="muted">block ${x.block}</span><br>${hash(x.tx)}` : "–";
  h += `<h2>Rounds</h2>` + table("trainer-rounds", [
    { key: "job", label: "job", num: 1, html: r => `<a href="#/job/${r.job}">${r.job}</a>` },
    { key: "round", label: "round", num: 1 },
    { key: "commit", label: "commit", nosort: 1, html: r => io(r.commit) },
    { key: "reveal", label: "reveal", nosort: 1, html: r => io(r.reveal) },
    { key: "verdict", label: "verdict", html: r => r.verdict ? verdict(r.verdict) : "<span class=muted>round open</span>", sort: r => r.verdict || "" },
    { key: "contribution", label: "contribution", num: 1, html: r => `<span title="${esc(r.contribution)}">${fracTxt(r.contribution)}</span>`, sort: r => fracNum(r.contribution) },
    { key: "reward", label: "reward", num: 1, html: r => r.reward === null ? "–" : wei(r.reward, r.token), sort: r => BigInt(r.reward || "0") },
    { key: "reason", label: "reason", html: r => esc(r.reason || (r.reveal && r.reveal.reason) || "") },
    { key: "trace", label: "trace", nosort: 1, html: r => r.verdict ? `<a href="#/trace/${r.job}/${r.round}/${esc(t.address)}">trace</a>` : "" },
  ], t.rounds, "no round yet");
  h += `<h2>Withdrawals</h2>` + table("trainer-withdrawals", [
    { key: "notice_index", label: "notice", num: 1 }, { key: "input_index", label: "input", num: 1 },
    { key: "amount", label: "amount", num: 1, html: w => wei(w.amount, w.token), sort: w => BigInt(w.amount) },
    { key: "tx", label: "transaction", html: w => hash(w.tx) },
  ], t.withdrawals, "no withdrawal");
  h += `<h2>Vouchers</h2>` + table("trainer-vouchers", [
    { key: "index", label: "output", num: 1 }, { key: "epoch", label: "epoch", num: 1 },
    { key: "amount", label: "amount", num: 1, html: v => wei(v.amount, v.token), sort: v => BigInt(v.amount) },
    { key: "state", label: "state", html: voucherCell },
  ], t.vouchers, "no voucher");
  h += `<p id="wallet-msg" class="muted">${window.ethereum ? "A wallet is present: executable vouchers can be executed from here (anyone may execute a voucher; the Application checks the proof)." : "No browser wallet (EIP-1193): read-only."}</p>`;
  return h;
}

async function pageTrace(job, round, a) {
  const t = await api(`trace/${job}/${round}/${a}`);
  const inp = (x, what) => x ? `<dl class="kv"><dt>input</dt><dd>${x.index} <span class="muted">(${esc(x.status)})</span></dd><dt>transaction</dt><dd>${hash(x.tx)}</dd><dt>block</dt><dd>${x.block}</dd>` +
    Object.entries(x.args).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${txt(v)}</dd>`).join("") + `</dl>` : `<p class="muted">no accepted ${what} input from this account</p>`;
  const claim = c => c.claim ? `<dl class="kv"><dt>epoch</dt><dd>${c.epoch}</dd><dt>ClaimAccepted tx</dt><dd>${hash(c.claim.tx)}</dd><dt>block</dt><dd>${c.claim.block}</dd><dt>claimed root</dt><dd>${hash(c.claim.root)}</dd>` +
    `<dt>node's root</dt><dd>${hash(c.node_root)} <span class="${c.root_matches ? "ok" : "bad"}">${c.root_matches ? "matches the chain" : "does not match"}</span></dd></dl>` :
    `<p class="warn">epoch ${c.epoch}: not claimed on chain yet (node: ${esc(c.node_status)})</p>`;
  let h = `<h1>Payout trace</h1><p>Job <a href="#/job/${t.job}">${t.job}</a>, round ${t.round}, trainer ${addr(t.address)}: ${verdict(t.entry.verdict)} contribution <span title="${esc(t.entry.contribution)}">${fracTxt(t.entry.contribution)}</span>, reward <b id="trace-reward">${wei(t.reward, t.token)}</b></p><ol class="trace" id="trace-steps">`;
  h += `<li data-step="commit"><span class="step">1. Commit</span> (hides the update until reveals open)${inp(t.commit, "commit")}</li>`;
  h += `<li data-step="reveal"><span class="step">2. Reveal</span>${inp(t.reveal, "reveal")}` +
    (t.commitment_check ? `<p>keccak(abi.encode(sender, job, round, modelCid, dataCid, salt)) = ${hash(t.commitment_check.recomputed)} <span class="${t.commitment_check.matches ? "ok" : "bad"}">${t.commitment_check.matches ? "equals the commitment" : "differs from the commitment"}</span></p>` : "") +
    (t.submission ? `<dl class="kv"><dt>model keccak</dt><dd>${hash(t.submission.model_hash)}</dd><dt>samples</dt><dd>${esc(t.submission.num_samples)}</dd><dt>weight</dt><dd>${esc(t.submission.weight)}</dd></dl>` : "") + `</li>`;
  const n = t.notice;
  h += `<li data-step="notice"><span class="step">3. Round notice</span> (closeRound input ${n.close_input ? n.close_input.index : "?"}, tx ${hash(n.close_input && n.close_input.tx)})` +
    `<dl class="kv"><dt>output index</dt><dd id="trace-output-index">${n.output_index}</dd><dt>epoch</dt><dd>${n.epoch}</dd><dt>output hash</dt><dd>${hash(n.hash)}</dd><dt>entry</dt><dd><code>${esc(JSON.stringify(t.entry))}</code></dd>` +
    `<dt>proof</dt><dd>${n.proof && n.proof.siblings ? `<details><summary>${n.proof.siblings.length} siblings</summary>${n.proof.siblings.map(hash).join("<br>")}</details>` : "<span class=muted>none yet (the epoch is not claimed)</span>"}</dd></dl></li>`;
  h += `<li data-step="claim"><span class="step">4. Claim covering the notice</span>${claim(t.claim)}</li>`;
  h += `<li data-step="voucher"><span class="step">5. Withdrawal vouchers</span> <span class="muted">(the reward is credited to the in-app balance; a withdraw turns the balance into a voucher)</span>` +
    (t.vouchers.length ? t.vouchers.map(v => `<dl class="kv"><dt>voucher</dt><dd>output ${v.index}, ${wei(v.amount, v.token)}</dd><dt>withdraw input</dt><dd>${v.withdraw_input ? v.withdraw_input.index + " · " + hash(v.withdraw_input.tx) : "–"}</dd>` +
      `<dt>claim</dt><dd>${v.claim.claim ? "epoch " + v.epoch + " · " + hash(v.claim.claim.tx) : "epoch " + v.epoch + " not claimed yet"}</dd><dt>execution</dt><dd>${voucherCell(v)}</dd></dl>`).join("") :
      `<p class="muted">no withdrawal after this round yet</p>`) + `</li></ol>`;
  return h;
}

async function pageNode() {
  const n = await api("node");
  let h = `<h1>Node</h1><div class="cards">${card("application", `<span class="mono">${short(n.app, 12)}</span>`)}${card("chain id", esc(n.chain_id))}` +
    `${card("inputs processed", `${n.processed} / ${n.inputs_total}`, 'id="node-processed"')}${card("epochs", String(n.epochs.length))}` +
    `${card("notices · vouchers · executed", `${n.outputs.notices} · ${n.outputs.vouchers} · ${n.outputs.executed}`)}${card("head block", esc(n.head_block))}</div>` +
    (n.chain_error ? `<p class="error">${esc(n.chain_error)}</p>` : "");
  h += `<h2>Epochs and claims</h2>` + table("epochs-table", [
    { key: "index", label: "epoch", num: 1 }, { key: "blocks", label: "blocks", nosort: 1, html: e => `${e.first_block}–${e.last_block}` },
    { key: "inputs", label: "inputs", num: 1 }, { key: "outputs", label: "outputs", num: 1 },
    { key: "status", label: "node status" },
    { key: "root", label: "outputs root", html: e => hash(e.root) },
    { key: "claim", label: "on chain", html: e => e.claim ? `<span class="ok">ClaimAccepted</span> ${hash(e.claim.tx)} ${e.root_matches ? '<span class="ok">root matches</span>' : '<span class="bad">root differs</span>'}` : '<span class="muted">not claimed</span>', sort: e => e.claim ? 1 : 0 },
  ], n.epochs, "no epoch");
  h += `<h2>Claims on the Authority</h2>` + table("claims-table", [
    { key: "epoch", label: "epoch", num: 1 }, { key: "last_block", label: "last block", num: 1 },
    { key: "root", label: "root", html: c => hash(c.root) }, { key: "tx", label: "transaction", html: c => hash(c.tx) },
    { key: "accepted", label: "status", html: c => c.accepted ? '<span class="ok">accepted</span>' : '<span class="warn">submitted</span>' },
  ], n.claims, "no claim yet");
  h += `<h2>Inputs <span class="muted">(latest 200)</span></h2>` + table("inputs-table", [
    { key: "index", label: "input", num: 1 }, { key: "epoch", label: "epoch", num: 1 }, { key: "block", label: "block", num: 1 },
    { key: "sender", label: "sender", html: i => addr(i.sender) }, { key: "method", label: "call" },
    { key: "args", label: "job/round", nosort: 1, html: i => i.args.job_id !== undefined ? `${i.args.job_id}${i.args.round !== undefined ? "/" + i.args.round : ""}` : "" },
    { key: "status", label: "status", html: i => `<span class="${i.status === "ACCEPTED" ? "ok" : i.status === "NONE" ? "muted" : "bad"}" title="${esc(i.reason || "")}">${esc(i.status)}</span>` },
    { key: "tx", label: "transaction", html: i => hash(i.tx) },
  ], n.inputs, "no input");
  return h;
}

// ---------------------------------------------------------------------------- wallet (EIP-1193)
async function executeVoucher(index, btn) {
  const msg = document.getElementById("wallet-msg");
  btn.disabled = true;
  try {
    const v = await api("voucher/" + index);
    if (!v.calldata) throw new Error(`voucher ${index} is ${v.state}`);
    const [from] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const chain = await window.ethereum.request({ method: "eth_chainId" });
    if (v.chain_id !== null && BigInt(chain) !== BigInt(v.chain_id))
      throw new Error(`the wallet is on chain ${BigInt(chain)}, the Application on ${v.chain_id}`);
    const tx = await window.ethereum.request({ method: "eth_sendTransaction", params: [{ from, to: v.app, data: v.calldata }] });
    if (msg) msg.innerHTML = `voucher ${index}: sent ${hash(tx)}; waiting for the chain…`;
    document.body.dataset.lastTx = tx;
  } catch (e) {
    if (msg) msg.innerHTML = `<span class="error">voucher ${index}: ${esc(e.message || e)}</span>`;
    btn.disabled = false;
  }
}
main.addEventListener("click", ev => {
  const b = ev.target.closest("button.exec");
  if (b) executeVoucher(Number(b.dataset.index), b);
});
function showWallet() {
  document.getElementById("wallet").textContent = window.ethereum ? "wallet: connected provider" : "read-only (no wallet)";
}

// ---------------------------------------------------------------------------- router + live
function route() {
  const p = (location.hash.replace(/^#\/?/, "") || "jobs").split("/");
  if (p[0] === "job" && p[1]) return { key: "job", args: [p[1]] };
  if (p[0] === "trainer" && p[1]) return { key: "trainer", args: [p[1]] };
  if (p[0] === "trace" && p.length >= 4) return { key: "trace", args: [p[1], p[2], p[3]] };
  if (p[0] === "node") return { key: "node", args: [] };
  return { key: "jobs", args: [] };
}
const PAGES = { jobs: pageJobs, job: pageJob, trainer: pageTrainer, trace: pageTrace, node: pageNode };

async function render(keepScroll) {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  const r = route(), key = r.key + ":" + r.args.join("/"), t0 = performance.now();
  document.querySelectorAll("[data-nav]").forEach(a => a.classList.toggle("active", a.dataset.nav === r.key || (r.key === "job" && a.dataset.nav === "jobs")));
  try {
    const html = await PAGES[r.key](...r.args);
    const y = window.scrollY;
    main.innerHTML = html;
    if (keepScroll && state.route === key) window.scrollTo(0, y);
  } catch (e) {
    main.innerHTML = `<p class="error">${esc(e.message || e)}</p>`;
  }
  state.route = key;
  state.renders += 1;
  state.lastRenderMs = performance.now() - t0;
  document.body.dataset.readyAt = performance.now().toFixed(1); // ms since navigation start
  document.body.dataset.ready = key;
  document.body.dataset.renders = String(state.renders);
  state.busy = false;
  if (state.again) { state.again = false; render(true); }
}

async function poll() {
  try {
    const v = await api("version");
    document.getElementById("live").classList.toggle("stale", !!v.chain_error);
    document.getElementById("live").title = v.chain_error || `live: ${v.processed} inputs processed, block ${v.head_block}`;
    if (state.version !== null && v.version !== state.version) render(true);
    state.version = v.version;
  } catch (e) {
    document.getElementById("live").classList.add("stale");
  }
  setTimeout(poll, 1500);
}

window.__loads = (window.__loads || 0) + 1;
document.getElementById("goto").addEventListener("submit", ev => {
  ev.preventDefault();
  const a = document.getElementById("goto-addr").value.trim();
  if (a) location.hash = "#/trainer/" + a.toLowerCase();
});
window.addEventListener("hashchange", () => { document.body.dataset.ready = ""; render(false); });
showWallet();
render(false).then(poll);
