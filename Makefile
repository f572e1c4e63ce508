# vaelab: `make run` trains and evaluates the default class-conditional VAE; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN    ?= runs/cvae-mnist

.PHONY: install run test docs clean

install: $(STAMP)

# torch is pinned in constraints.txt to the CPU build (a looser range would download the CUDA build).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,tensorboard,explore,docs]'
	touch $(STAMP)

# Train (or finish training) the default CVAE, evaluate it with K = 1000, save pictures and the report.
run: install
	$(PY) -m vaelab data
	$(PY) -m vaelab train --config configs/cvae-mnist.toml --out $(RUN) --resume
	$(PY) -m vaelab evaluate $(RUN) --iw-samples 1000
	$(PY) -m vaelab sample $(RUN) -o $(RUN)/samples.png
	$(PY) -m vaelab reconstruct $(RUN) -o $(RUN)/reconstructions.png
	$(PY) -m vaelab report $(RUN) -o $(RUN)/report.html --pdf $(RUN)/report.pdf
	@echo "results: $(RUN)/report.html (and report.pdf, eval.json, metrics.jsonl, figures/, samples/)"

test: install
	$(PY) -m pytest -q

# The documentation site (MkDocs, Material theme) into site/; --strict turns every warning into an error.
docs: install
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) runs site .pytest_cache
