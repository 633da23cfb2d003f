"""``python -m hnet_seq.cli`` is the same as ``hnet-seq``."""
from hnet_seq.cli.main import app

app(prog_name="hnet-seq")
