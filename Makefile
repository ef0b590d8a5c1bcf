# musicrecall: `make run` builds the whole workbook, `make test` checks it. Both set themselves up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= small
NB ?=
ARGS ?=
# A folder of imported data (musicrecall.io): runs write to reports/datasets/<name>/, never over the world's.
DATASET ?=
ONLY ?=
# Notebooks run side by side after 01 (default: one per core, at most 2); JOBS=1 runs them one at a time.
JOBS ?=
RUN_ARGS = $(if $(DATASET),--dataset "$(DATASET)") $(if $(ONLY),--only $(ONLY)) $(if $(JOBS),--jobs $(JOBS))
STAMP := $(VENV)/.installed

.PHONY: run test test-fast nb lab clean lint bench install audio-corpus

# (Re)install when pyproject.toml changes; the stamp records that the venv matches it.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,spark]"
	# musicnn ships the pretrained tagger weights; --no-deps because its TensorFlow pin is never imported.
	$(PY) -m pip install --quiet --no-deps musicnn==0.1.0
	@touch $(STAMP)

install: $(STAMP)

# The whole workbook on the world, or with DATASET=<folder> the notebooks that apply to imported data
# (00-04, 06, 08; ONLY=01,02 picks others).
run: $(STAMP)
	$(PY) -m musicrecall.report run --profile $(PROFILE) $(RUN_ARGS) $(ARGS)

# One notebook with other parameters, e.g.  make nb NB=01 ARGS="-p seed 7"  (DATASET=<folder> as for run)
nb: $(STAMP)
	@test -n "$(NB)" || (echo 'usage: make nb NB=01 ARGS="-p seed 7" [DATASET=<folder>]'; exit 2)
	$(PY) -m musicrecall.report run --profile $(PROFILE) --only $(NB) $(if $(DATASET),--dataset "$(DATASET)") $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

# The fast subset (markers applied in tests/conftest.py): no notebooks, Spark, ../shared data or slow tests.
FAST := not slow and not notebooks and not spark and not real_data
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "$(FAST)"

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests bench notebooks

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

# Optional real-audio corpus for notebook 05: freely licensed game and album music from Debian's
# packages (downloaded from the package registry, unpacked, never committed).
AUDIO_DEBS := wesnoth-1.16-music warzone2100-music singularity-music hyperrogue-music \
	fretsonfire-songs-muldjord fretsonfire-songs-sectoid planetblupi-music-ogg asc-music
audio-corpus:
	mkdir -p data/raw/audio/.debs
	cd data/raw/audio/.debs && apt-get download $(AUDIO_DEBS)
	for deb in data/raw/audio/.debs/*.deb; do dpkg -x $$deb data/raw/audio/; done
	@echo "audio corpus in data/raw/audio (notebook 05 embeds it when present)"

clean:
	find reports -mindepth 1 ! -name README.md -delete
	find data -mindepth 2 ! -name README.md -delete
