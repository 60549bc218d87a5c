// plantgate operator console: the little behaviour its server-rendered pages need
// (docs/operator.md, "Web console"). A static file because the Content-Security-Policy allows no
// inline script; plain DOM, no framework. Text goes in with textContent only, never as markup.
'use strict';
(function () {
  function cell(tr, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  // Live decisions: server-sent events from the audit log, newest on top.
  function live(tbody) {
    var status = document.getElementById('live-status');
    var stream = new EventSource(tbody.dataset.stream);
    stream.addEventListener('open', function () {
      document.body.dataset.live = 'connected';
      if (status) status.textContent = 'Live: new decisions appear at the top as the gateway records them.';
    });
    stream.addEventListener('error', function () {
      document.body.dataset.live = 'reconnecting';
      if (status) status.textContent = 'Live stream interrupted; reconnecting…';
    });
    stream.addEventListener('decision', function (ev) {
      var r = JSON.parse(ev.data);
      var seq = String(r.seq);
      for (var i = 0; i < tbody.rows.length; i++) if (tbody.rows[i].dataset.seq === seq) return;
      var tr = document.createElement('tr');
      tr.className = r.effect === 'allow' ? 'allow' : 'deny';
      tr.dataset.seq = seq;
      cell(tr, r.at);
      cell(tr, r.workload);
      cell(tr, r.asset);
      cell(tr, r.operation);
      cell(tr, (r.points || []).join(', '));
      cell(tr, r.values);
      cell(tr, r.effect, 'effect');
      cell(tr, r.reason, 'reason');
      cell(tr, [r.rule, r.freeze, r.approval, r.interlock].filter(function (x) { return x; }).join(' · '));
      tbody.insertBefore(tr, tbody.firstChild);
      while (tbody.rows.length > 500) tbody.deleteRow(-1);
    });
  }

  // Approvals: say when a new request arrives (a reload would lose a reason being typed).
  function watchApprovals(note) {
    var stream = new EventSource('/console/events/decisions?reason=APPROVAL_REQUIRED');
    stream.addEventListener('decision', function (ev) {
      var id = JSON.parse(ev.data).approval;
      var known = document.querySelectorAll('[data-approval]');
      for (var i = 0; i < known.length; i++) if (known[i].dataset.approval === id) return;
      note.hidden = false;
    });
  }

  // Freeze form: the site scope takes no value.
  function freezeForm(scope, value) {
    function sync() {
      value.disabled = scope.value === 'site';
      value.placeholder = { asset: 'plc1', workload: 'spiffe://plant.example/agent/*', owner: 'alice@plant.example', site: '' }[scope.value] || '';
    }
    scope.addEventListener('change', sync);
    sync();
  }

  var rows = document.getElementById('decision-rows');
  if (rows && rows.dataset.stream) live(rows);
  var news = document.getElementById('approval-news');
  if (news) watchApprovals(news);
  var scope = document.getElementById('freeze-scope');
  var value = document.getElementById('freeze-value');
  if (scope && value) freezeForm(scope, value);
})();
