"""A separate process that saves annotations, for the concurrent-writer test."""

import sys

import numpy as np

from anomascope.storage import Database, save_annotation

url, case_id, lineage, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
db = Database(url)
rng = np.random.default_rng(abs(hash(name)) % 2**32)
for i in range(count):
    mask = rng.random((16, 16)) > 0.5
    save_annotation(db, case_id=case_id, mask=mask, author=name, note=f"{name} {i}")
    save_annotation(db, case_id=case_id, mask=mask, author=name, corrects=lineage, note=f"{name} fix {i}")
db.dispose()
