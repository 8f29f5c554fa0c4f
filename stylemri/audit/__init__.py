"""`stylemri audit`: can synthetic scans be shared and used? Fidelity, privacy and usefulness in one report.

    train, holdout = load_set("training", data_cfg), load_set("holdout", holdout_cfg)
    result = audit(train, holdout, synthetic, feature_net("inception"), AuditConfig(num=200))
    write_report("audit-out", result)   # audit-out/audit.json, audit-out/report.html

One file per concern: sets (loading, patient overlap), features, fidelity, privacy, utility, morphometry,
verdicts (the thresholds registry), figures, report (HTML), model (the one adapter to a trained run).
"""

from stylemri.audit.features import FEATURES, feature_net
from stylemri.audit.run import AuditConfig, AuditResult, audit
from stylemri.audit.sets import ImageSet, check_overlap, from_arrays, holdout_config, load_set

__all__ = ["FEATURES", "feature_net", "AuditConfig", "AuditResult", "audit", "ImageSet", "check_overlap",
           "from_arrays", "holdout_config", "load_set"]
