"""The two halves stay apart: ae_tf never imports Beam."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ae_tf_sources_do_not_mention_beam():
    pattern = re.compile(r"^\s*(import|from)\s+apache_beam", re.MULTILINE)
    offenders = [str(p) for p in (ROOT / "ae_tf").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_importing_ae_tf_loads_no_beam():
    code = ("import sys, ae_tf, ae_tf.commands.main, ae_tf.model.train, ae_tf.model.export, ae_tf.model.encoder, ae_tf.inputs.data, ae_tf.model.families;"
            "print([m for m in sys.modules if m.startswith(('apache_beam', 'pipelines'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
