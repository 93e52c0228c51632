"""timm, imported with the Hugging Face Hub's complaint kept off stdout.

scripts/timm_venv.sh installs huggingface_hub without its dependencies (as the project's setup
asks), so when timm probes it for hub downloads it prints "Error importing
huggingface_hub.hf_api: No module named ..." to stdout; timm then runs without the hub, which
nothing here needs (every model is built or read offline). A benchmark's stdout is its
Markdown report, so that line goes to stderr instead:

    from timm_quiet import timm
"""
import contextlib
import sys

with contextlib.redirect_stdout(sys.stderr):
    import timm  # noqa: F401  (re-exported)
