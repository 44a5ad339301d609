# Two commands do all the set-up on a fresh machine: `make test` and `make reproduce`.
# Each creates the virtual environment .venv from the requirements on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CI_DIR := build/ci
# CI-size runs write their models here, never over a full-size run's artifacts/.
TEST_ENV := MNIST_AD_ARTIFACTS=$(CI_DIR)/artifacts

.PHONY: help venv lint unit notebooks nbval browser book book-test test reproduce readme lab strip clean
.PHONY: assignments grade written classroom hub hub-test answers

help:
	@echo "make test       lint, unit tests, every notebook at CI size (creates .venv)"
	@echo "make reproduce  run notebooks 01-07 at full size, write results/ (30-50 minutes on 2 cores)"
	@echo "make lab        open JupyterLab on the notebooks"
	@echo "make book       the course as a website in build/book/html, from make reproduce's notebooks (EXECUTED=dir)"
	@echo "make strip      remove outputs from the notebooks before committing"
	@echo "make assignments  nbgrader student versions in build/classroom/release (SIZE=classroom: every effect, a third of the time; SIZE=ci: small runs)"
	@echo "make grade        autograde SUBMISSIONS=dir (one folder per student) in a sandbox, write grades.csv (JOBS=N)"
	@echo "make written     add the points of hand-graded written answers (GRADES=...)"
	@echo "make hub        a JupyterHub for a class on http://127.0.0.1:8000 (state in build/hub)"
	@echo "make answers    measure the answers to the discussion questions for the teacher's guide (after make reproduce, about 40 minutes)"
	@echo "make bench      measure speed on this machine, write benchmarks/results.json (4-12 minutes)"
	@echo "make bench-test time make test from a fresh clone, stage by stage (about 12 minutes)"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned packages as pip in about half the time, compiled to bytecode
	@# as pip does (a sandboxed grading kernel cannot write it); where uv cannot be installed
	@# or cannot reach the index (it does not read pip's configuration), pip does it.
	$(BIN)/python -m pip install --quiet "uv~=0.13.9" && \
		$(BIN)/uv pip install --quiet --native-tls --compile-bytecode --python $(BIN)/python -r requirements-dev.txt || \
		{ $(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -r requirements-dev.txt; }
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# In UNIT_JOBS processes (pytest-xdist): one process keeps about one core busy, as the tests'
# models are tiny; each test file stays in one process, with its module fixtures.
UNIT_JOBS ?= 2
unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(UNIT_JOBS) --dist loadfile \
		-m "not notebooks and not browser and not book and not classroom and not hub"

# Executes every notebook in order with papermill at CI size (copies in build/ci/executed).
notebooks: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m notebooks

# Re-runs papermill's executed copies and compares the outputs marked NBVAL_CHECK_OUTPUT:
# only the notebooks that have such cells (`make notebooks` already ran every notebook), with
# TensorFlow on as many threads as make notebooks' kernels had (tests/test_notebooks.py).
KERNEL_THREADS = 1
NBVAL_NOTEBOOKS = $(patsubst notebooks/%,$(CI_DIR)/executed/%,\
	$(shell grep -l NBVAL_CHECK_OUTPUT notebooks/*.ipynb))
nbval: $(STAMP)
	$(TEST_ENV) TF_NUM_INTRAOP_THREADS=$(KERNEL_THREADS) $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider $(NBVAL_NOTEBOOKS)

# Notebook 03's explorer in JupyterLab + headless Chromium (needs `make notebooks` first).
browser: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m browser

# The CI-size website (build/book-ci/) in headless Chromium (needs `make notebooks` first).
book-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m book

# make test's stages, in order (benchmarks/make_test.py times each). A stage of several
# targets, joined by commas, runs them two at a time: each keeps about one core busy, and
# its output is printed whole when it ends.
TEST_STAGES := lint unit notebooks hub-test,nbval,browser,book-test classroom
test: $(STAMP)
	@for stage in $(TEST_STAGES); do \
		$(MAKE) --no-print-directory -j2 --output-sync=target $$(echo $$stage | tr , ' ') \
			|| exit 1; \
	done

reproduce: $(STAMP)
	$(BIN)/python -m tooling.reproduce

# The discussion questions' measured answers (results/answers.json, the teacher's guide),
# from the models of the last `make reproduce`.
answers: $(STAMP)
	$(BIN)/python -m tooling.answers

readme: $(STAMP)
	$(BIN)/python -m tooling.reproduce --readme-only

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

# The course as a static website, built offline from executed notebooks (never re-run):
# by default those of `make reproduce` (artifacts/executed/); after `make notebooks`,
# `make book EXECUTED=build/ci/executed MNIST_AD_ARTIFACTS=build/ci/artifacts` (CI size).
EXECUTED ?=
book: $(STAMP)
	$(BIN)/python -m tooling.book $(if $(EXECUTED),--executed "$(EXECUTED)",)

strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf build

# --- Classroom: graded homework with nbgrader (teacher's guide: notebooks/README.md) -------
# The course notebooks are the instructor version; these targets work in build/classroom/
# (git-ignored: `make clean` deletes its gradebook too, keep grades.csv somewhere safe).
SIZE ?= full
SUBMISSIONS ?=
GRADES ?= build/classroom/grades.csv
JOBS ?= 1
SANDBOX ?= on

# Student versions of every notebook with exercises, at SIZE=full (the course), classroom
# (about a third of full size's time, every effect the text describes still shown) or ci
# (small runs, some effects lost). `python -m tooling.series --size SIZE` times a size.
assignments: $(STAMP)
	$(BIN)/python -m tooling.classroom assignments --size $(SIZE)

# Autogrades SUBMISSIONS (one folder per student) and writes the grade table GRADES.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-of-student-folders"; exit 2; }
	$(BIN)/python -m tooling.classroom grade "$(SUBMISSIONS)" --out "$(GRADES)" --jobs $(JOBS) \
		$(if $(filter off,$(SANDBOX)),--no-sandbox,)

# Adds the points a teacher wrote into GRADES' _written.csv to its scores: GRADES' _final.csv.
written: $(STAMP)
	$(BIN)/python -m tooling.classroom written --grades "$(GRADES)"

# CI check (after `make notebooks`): release at CI size in a scratch folder, autograde the student
# versions, validate and score both versions from their one execution each.
classroom: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m classroom

# --- A JupyterHub for a class (teacher's guide: notebooks/README.md) --------------------------
# `make hub` runs hub/jupyterhub_config.py in the foreground on http://127.0.0.1:8000, state
# in build/hub/ (passwords in build/hub/passwords.txt unless MNIST_AD_HUB_PASSWORD and
# MNIST_AD_HUB_ADMIN_PASSWORD are set). Needs Debian's node-configurable-http-proxy.
# Options: make hub HUB_ARGS="--JupyterHub.bind_url=http://127.0.0.1:8001"
HUB_ARGS ?=
hub: $(STAMP)
	$(BIN)/jupyterhub -f hub/jupyterhub_config.py $(HUB_ARGS)

# CI check: two students and an instructor, release, fetch, submit, collect, autograde.
hub-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m hub

# --- Benchmarks (GitHub issues 7 and 18) ----------------------------------------------------
# `make bench` measures where the time goes on this machine and writes benchmarks/results.json
# (see benchmarks/README.md). Its benchmark-only packages (ART, CleverHans, and PyTorch for
# the training-step peer) go into the same .venv on first use, resolved with the course's
# pins; if they fail to install, the benchmark still runs and reports them unavailable (the
# install is retried next time).
# Options: make bench BENCH_ARGS="--skip-series --skip-peers" (or --quick for a smoke run;
# --skip-torch leaves PyTorch out of the train_step section).
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: bench bench-test

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	@if $(BIN)/python -m pip install --quiet -r requirements-bench.txt; then touch $@; else \
		echo "Note: benchmark-only packages did not install; peers will be reported unavailable."; fi

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# `make test` from a fresh clone of HEAD, stage by stage (about 12 minutes): writes
# benchmarks/make_test.json, which `make bench` reads into its table. Standard library only.
bench-test:
	$(PYTHON) -m benchmarks.make_test
