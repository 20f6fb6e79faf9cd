"""English toxicity probes on the residual stream: features, probe, metrics, transfer, import."""
from probes.features import extract_features, feature_name, pool_hidden
from probes.importer import import_reference_probe
from probes.metrics import probe_metrics
from probes.probe import ProbeMismatchError, ToxicityProbe
from probes.train import load_probe_data, split_records, train_probe
from probes.transfer import transfer_report

__all__ = ["extract_features", "pool_hidden", "feature_name", "ToxicityProbe", "ProbeMismatchError",
           "probe_metrics", "train_probe", "load_probe_data", "split_records", "transfer_report",
           "import_reference_probe"]
