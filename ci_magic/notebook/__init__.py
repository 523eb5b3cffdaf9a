"""The Jupyter front end: the ``%%ask`` magic, the notebook session behind it, the cells it inserts and the
comm bridge to the JupyterLab extension (``labextension/``)."""
