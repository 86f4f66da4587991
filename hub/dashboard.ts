/**
 * The hub's dashboard: one self-contained page (no build step, no framework) that reads the admin
 * API. The fleet at a glance with each agent's labels (sortable, filterable by id or label),
 * throughput and lag over time, the latest conflicts and rejections, what agents reported that a
 * restore of the database lost (with whether it was reapplied), and a page per agent (#agent=ID).
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outpost hub</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f5f7fa; }
  header { background: #1d2733; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 16px 24px; display: grid; gap: 16px; grid-template-columns: 2fr 1fr; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e8ef; }
  th { cursor: pointer; user-select: none; }
  tr.agent { cursor: pointer; }
  tr.agent:hover { background: #eef3fb; }
  .on { color: #137333; } .off { color: #b3261e; } .repaired { color: #b06000; }
  input { padding: 4px 8px; width: 240px; }
  svg { width: 100%; height: 120px; background: #fafbfc; }
  .muted { color: #667; }
  .label { background: #eef3fb; border-radius: 3px; padding: 0 4px; margin-right: 4px; font-size: 12px; white-space: nowrap; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header><h1>Outpost hub</h1><span id="summary" class="muted"></span></header>
<main id="fleet-view">
  <section class="wide">
    <h2>Fleet</h2>
    <input id="filter" placeholder="filter by agent or label (site=berlin)" aria-label="filter agents">
    <table id="fleet"><thead><tr>
      <th data-key="agentId">Agent</th><th data-key="labelText">Labels</th><th data-key="online">Link</th><th data-key="lag">Lag (changes)</th>
      <th data-key="lagSeconds">Lag (s)</th><th data-key="outboxDepth">Outbox</th><th data-key="lastSeen">Last seen</th><th data-key="scopeDocuments">Scope</th>
      <th data-key="repairs">Verified</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Commits per second</h2><svg id="throughput" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></section>
  <section><h2>Largest lag (changes)</h2><svg id="lag" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></section>
  <section><h2>Latest conflicts</h2><table id="conflicts"><tbody></tbody></table></section>
  <section><h2>Latest rejections</h2><table id="rejections"><tbody></tbody></table></section>
  <section class="wide"><h2>Lost in restores</h2><p id="lost-summary" class="muted"></p><table id="lost"><tbody></tbody></table></section>
</main>
<main id="agent-view" hidden>
  <section class="wide"><a href="#">&larr; fleet</a><h2 id="agent-title"></h2><table id="agent-detail"><tbody></tbody></table></section>
</main>
<script>
let sortKey = 'agentId', sortDir = 1, agents = [];
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
async function api(path) {
  const token = sessionStorage.getItem('outpost-admin-token');
  const response = await fetch(path, { headers: token ? { authorization: 'Bearer ' + token } : {} });
  if (response.status === 401) {
    const entered = prompt('Admin token');
    if (entered) { sessionStorage.setItem('outpost-admin-token', entered); return api(path); }
  }
  return response.json();
}
const lagOf = (a) => Math.max(0, a.scope?.lagChanges ?? 0, ...Object.values(a.collections).map((c) => c.lagChanges));
const scopeOf = (a) => a.scope ? a.scope.documents + ' docs, ' + (a.scope.bytes / 1024).toFixed(1) + ' KiB' : '-';
// When the copy last matched the hub, and the repairs it needed (a device with repairs stands out).
const verifiedOf = (a) => !a.verification ? '-' : (a.verification.lastVerifiedAt ? new Date(a.verification.lastVerifiedAt).toLocaleTimeString() : 'not yet') +
  (a.verification.repairs ? ', ' + a.verification.repairs + ' repairs (last: ' + a.verification.lastRepairCause + ')' : '');
const repairDetail = (v) => v.divergencesFound + ' divergences found, ' + v.repairs + ' repairs, ' + v.documentsRepaired + ' documents, ' + v.bytesRepaired + ' bytes' +
  (v.lastRepairCause ? '; last repair: ' + v.lastRepairCause + ' at ' + v.lastRepairAt : '');
const lagSecondsOf = (a) => Math.max(0, ...Object.values(a.collections).map((c) => c.lagSeconds));
const labelsOf = (a) => Object.entries(a.labels || {}).map(([name, value]) => name + '=' + value);
// Each word must match: name=value a label exactly (site=berlin is not site=berlin-east), any other part of the id or labels.
const matches = (a, filter) => filter.split(/\\s+/).filter(Boolean).every((term) => term.includes('=')
  ? labelsOf(a).some((label) => label.toLowerCase() === term)
  : (a.agentId + ' ' + a.labelText).toLowerCase().includes(term));
function renderFleet() {
  const filter = document.getElementById('filter').value.toLowerCase();
  const rows = agents.map((a) => ({ ...a, lag: lagOf(a), lagSeconds: lagSecondsOf(a), labelText: labelsOf(a).join(' '), scopeDocuments: a.scope?.documents ?? -1, repairs: a.verification?.repairs ?? -1 }))
    .filter((a) => matches(a, filter))
    .sort((x, y) => (x[sortKey] > y[sortKey] ? 1 : x[sortKey] < y[sortKey] ? -1 : 0) * sortDir);
  document.querySelector('#fleet tbody').innerHTML = rows.map((a) =>
    '<tr class="agent" data-agent="' + esc(a.agentId) + '"><td>' + esc(a.agentId) + '</td>' +
    '<td class="labels">' + labelsOf(a).map((l) => '<span class="label">' + esc(l) + '</span>').join('') + '</td>' +
    '<td class="' + (a.online ? 'on">online' : 'off">offline') + '</td><td class="lag">' + a.lag + '</td><td>' + a.lagSeconds.toFixed(1) + '</td>' +
    '<td>' + esc(a.outboxDepth ?? '-') + '</td><td>' + esc(a.lastSeen ? new Date(a.lastSeen).toLocaleTimeString() : '-') + '</td>' +
    '<td class="scope">' + esc(scopeOf(a)) + '</td><td class="verified' + (a.verification?.repairs ? ' repaired' : '') + '">' + esc(verifiedOf(a)) + '</td></tr>').join('');
  document.getElementById('summary').textContent = agents.filter((a) => a.online).length + ' of ' + agents.length + ' agents online';
}
function chart(id, values) {
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => (i * 600 / Math.max(1, values.length - 1)).toFixed(1) + ',' + (115 - v / max * 105).toFixed(1)).join(' ');
  document.getElementById(id).innerHTML = '<polyline fill="none" stroke="#1a73e8" stroke-width="2" points="' + points + '"/>' +
    '<text x="4" y="14" font-size="12" fill="#667">max ' + max.toFixed(1) + '</text>';
}
function list(id, rows) {
  document.querySelector('#' + id + ' tbody').innerHTML = rows.length ? rows.join('') : '<tr><td class="muted">none</td></tr>';
}
async function refresh() {
  const [fleet, history, conflicts, rejections, lost] = await Promise.all([api('/v1/agents'), api('/v1/history'), api('/v1/conflicts?limit=10'), api('/v1/rejections?limit=10'), api('/v1/restore/lost?limit=1000')]);
  agents = fleet.agents;
  renderFleet();
  chart('throughput', history.samples.map((s) => s.commitsPerSecond));
  chart('lag', history.samples.map((s) => s.maxLag));
  list('conflicts', conflicts.conflicts.map((c) => '<tr><td>' + esc(c.collection + '/' + c.key) + '</td><td>' + esc(c.loser.origin) + ' lost to ' + esc(c.winner.origin) + '</td><td>' + esc(c.reason) + '</td></tr>'));
  list('rejections', rejections.rejections.map((r) => '<tr><td>' + esc(r.agentId) + ' #' + r.seq + '</td><td>' + esc(r.reason) + '</td><td class="muted">' + esc(r.detail) + '</td></tr>'));
  const waiting = lost.lost.filter((d) => !d.reapplied).length;
  document.getElementById('lost-summary').textContent = lost.lost.length === 0 ? 'no restore lost anything agents still held'
    : lost.lost.length + ' lost versions reported, ' + waiting + ' not reapplied yet' + (waiting ? ' (outpost hub restore reapply)' : '');
  list('lost', lost.lost.slice(-10).reverse().map((d) => '<tr><td>' + esc(d.collection + '/' + d.key) + '</td><td>version ' + d.version + ' (' + esc(d.op) + ' by ' + esc(d.origin) + ')</td><td>reported by ' +
    esc(d.reporters.map((r) => r.agentId).join(', ')) + '</td><td>' + esc(d.reapplied ? d.reapplied.outcome + (d.reapplied.lsn ? ' at LSN ' + d.reapplied.lsn : '') : 'waiting') + '</td></tr>'));
  showAgent();
}
function transferOf(t) {
  const mb = (n) => (n / 1e6).toFixed(1) + ' MB';
  const spent = t.periods.map((p) => mb(p.spentBytes) + ' of ' + mb(p.budgetBytes) + ' this ' + p.period).join(', ');
  const waiting = t.waiting.documents + t.waiting.blobs;
  return spent + (waiting ? '; waiting for it: ' + t.waiting.documents + ' writes, ' + t.waiting.blobs + ' blobs' : '');
}
function showAgent() {
  const id = decodeURIComponent((location.hash.match(/^#agent=(.+)$/) || [])[1] || '');
  document.getElementById('fleet-view').hidden = !!id;
  document.getElementById('agent-view').hidden = !id;
  if (!id) return;
  const a = agents.find((x) => x.agentId === id);
  document.getElementById('agent-title').textContent = 'Agent ' + id;
  const rows = a ? [['Labels', labelsOf(a).join(' ') || '-'], ['Link', a.online ? 'online' : 'offline'], ['Address', a.address], ['Last seen', a.lastSeen], ['Provisioned', a.provisioned + (a.revoked ? ' (revoked)' : '')],
    ['Version', a.version], ['Outbox', a.outboxDepth], ['Oldest pending', a.oldestPendingAgeMs === undefined ? '-' : (a.oldestPendingAgeMs / 1000).toFixed(1) + ' s'], ...Object.entries(a.lastSeq).map(([inc, seq]) => ['Last seq (' + inc.slice(0, 8) + ')', seq]),
    ...(a.verification ? [['Verified', (a.verification.lastVerifiedAt ?? 'not yet') + (a.verification.lastVerifiedLsn === undefined ? '' : ' at LSN ' + a.verification.lastVerifiedLsn)], ['Repairs', repairDetail(a.verification)]] : []),
    ...(a.scope ? [['Scope', a.scope.buckets + ' buckets, ' + scopeOf(a) + (a.scope.lagChanges === undefined ? '' : ', lag ' + a.scope.lagChanges + ' changes')]] : []),
    ...(a.transfer ? [['Transfer budget', transferOf(a.transfer)]] : []),
    ...Object.entries(a.collections).map(([c, v]) => ['Collection ' + c, 'applied LSN ' + v.appliedLsn + ', lag ' + v.lagChanges + ' changes / ' + v.lagSeconds.toFixed(1) + ' s'])] : [['', 'unknown agent']];
  document.querySelector('#agent-detail tbody').innerHTML = rows.map(([k, v]) => '<tr><th>' + esc(k) + '</th><td>' + esc(v) + '</td></tr>').join('');
}
document.querySelector('#fleet thead').addEventListener('click', (e) => {
  const key = e.target.dataset.key; if (!key) return;
  sortDir = key === sortKey ? -sortDir : 1; sortKey = key; renderFleet();
});
document.querySelector('#fleet tbody').addEventListener('click', (e) => {
  const row = e.target.closest('tr.agent'); if (row) location.hash = 'agent=' + encodeURIComponent(row.dataset.agent);
});
document.getElementById('filter').addEventListener('input', renderFleet);
window.addEventListener('hashchange', showAgent);
refresh(); setInterval(refresh, 2000);
</script>
</body>
</html>
`;
