"""Log template mining with Drain (``drain3-improved``): a template per log record, stored in
``forewarn_log_templates`` keyed to the log row, plus per-template rates and first-seen templates.

The miner's state travels in the score flow's checkpoint, and records are mined in a fixed order
(time, service, row key), so a replayed window assigns exactly the same templates.

The row key is ``cityHash64(Timestamp, ServiceName, TraceId, SpanId, Body)`` of the ``otel_logs``
row, so ``otel_logs`` joins ``forewarn_log_templates`` on ``(ServiceName, Timestamp, log_key)``.

>>> m = LogMiner(max_templates=100)
>>> a = m.mine("user 42 logged in"); b = m.mine("user 7 logged in")
>>> a[0] == b[0], m.templates[b[0]]
(True, 'user <NUM> logged in')
>>> LogMiner.from_state(m.state()).mine("user 9 logged in")[0] == a[0]
True
"""

from __future__ import annotations

import base64
import zlib

import jsonpickle
import pandas as pd
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig
from forewarn.flows.signals import Window, finish

ERROR_SEVERITY = 17  # OTLP SEVERITY_NUMBER_ERROR
WARN_SEVERITY = 13  # OTLP SEVERITY_NUMBER_WARN
ERROR_TEXTS = ("ERROR", "FATAL", "CRITICAL", "ALERT", "EMERGENCY", "PANIC")
_MASKS = (
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "IP"),
    (r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{16,}\b", "HEX"),
    (r"(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?:[a-zA-Z%]{1,3})?(?![A-Za-z])", "NUM"),
)


class LogMiner:
    """Drain over masked log bodies; template ids are Drain's cluster ids (stable as templates widen)."""

    def __init__(self, max_templates: int = 5000, sim_th: float = 0.4):
        cfg = TemplateMinerConfig()
        cfg.drain_max_clusters = max_templates
        cfg.drain_sim_th = sim_th
        cfg.masking_instructions = [MaskingInstruction(p, name) for p, name in _MASKS]
        cfg.mask_prefix, cfg.mask_suffix = "<", ">"
        self.max_templates = max_templates
        self.miner = TemplateMiner(config=cfg)
        self.templates: dict[int, str] = {}

    def mine(self, body: str) -> tuple[int, bool]:
        """(template id, whether this record created the template)."""
        r = self.miner.add_log_message(body)
        cid = int(r["cluster_id"])
        self.templates[cid] = str(r["template_mined"])
        return cid, r["change_type"] == "cluster_created"

    def state(self) -> bytes:
        return base64.b64encode(zlib.compress(jsonpickle.dumps(self.miner.drain, keys=True).encode()))

    @classmethod
    def from_state(cls, blob: bytes | None, max_templates: int = 5000) -> LogMiner:
        m = cls(max_templates)
        if blob:
            drain = jsonpickle.loads(zlib.decompress(base64.b64decode(blob)).decode(), keys=True)
            m.miner.drain = drain
            m.templates = {int(c.cluster_id): c.get_template() for c in drain.clusters}
        return m


def fetch_logs(queries, w: Window) -> pd.DataFrame:
    sql = f"""
        SELECT Timestamp, ServiceName AS service, SeverityNumber AS sev, SeverityText AS sev_text, Body AS body,
               cityHash64(Timestamp, ServiceName, TraceId, SpanId, Body) AS log_key,
               intDiv(toUnixTimestamp64Milli(Timestamp), {{step:Int64}}) * {{step:Int64}} AS ts
        FROM {queries.t("otel_logs")}
        WHERE Timestamp >= fromUnixTimestamp64Milli({{t0:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{t1:Int64}})
          AND cityHash64(ServiceName) % {{shards:UInt64}} = {{shard:UInt64}}
        ORDER BY Timestamp, service, log_key"""
    return queries.store.frame(sql, w.params())


def mine_window(
    miner: LogMiner, logs: pd.DataFrame, w: Window
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(signals, per-record template rows, newly seen templates) for the logs of one window."""
    cols = ["name", "service", "labels", "ts", "value", "n", "k", "dt", "family"]
    if logs.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(), pd.DataFrame()
    ids, new = [], []
    for body in logs["body"]:
        cid, created = miner.mine(body)
        ids.append(cid)
        new.append(created)
    logs = logs.assign(template_id=ids, created=new)
    err = (logs["sev"] >= ERROR_SEVERITY) | logs["sev_text"].str.upper().isin(ERROR_TEXTS)
    warn = err | (logs["sev"] >= WARN_SEVERITY) | logs["sev_text"].str.upper().str.startswith("WARN")
    logs = logs.assign(err=err.astype(int), warn=warn.astype(int))
    step_s, nan = w.step_s, float("nan")
    per_svc = logs.groupby(["service", "ts"]).agg(
        n=("body", "size"), errs=("err", "sum"), new=("created", "sum")
    )
    out: list[tuple] = []
    for (service, ts), r in per_svc.iterrows():
        # log volume, not traffic: a service whose log export stalls while it serves requests is
        # not an outage (seen on the JS test bed: 40 s without records, spans steady)
        out.append(("log.rate", service, {}, ts, r.n / step_s, r.n, nan, step_s, "volume"))
        # judged as a share of the service's records: more traffic logs more errors
        out.append(("log.error_rate", service, {}, ts, r.errs / step_s, r.n, r.errs, step_s, "ratio"))
        out.append(("log.new_templates", service, {}, ts, float(r.new), r.new, nan, step_s, "novelty"))
    per_tpl = logs.groupby(["service", "template_id", "ts"]).agg(n=("body", "size"), warn=("warn", "sum"))
    for (service, tid, ts), r in per_tpl.iterrows():
        labels = {"template_id": str(tid)}
        out.append(("log.template_rate", service, labels, ts, r.n / step_s, r.n, r.warn, step_s, "template"))
    records = logs[["Timestamp", "service", "log_key", "template_id", "sev"]]
    created = logs[logs["created"]]
    first = pd.DataFrame(
        {
            "template_id": created["template_id"].astype("uint64"),
            "service": created["service"],
            "template": [miner.templates.get(int(t), "") for t in created["template_id"]],
            "first_seen": created["Timestamp"],
        }
    )
    return finish([pd.DataFrame(out, columns=cols)]), records, first
