# pedstream: `make demo` and `make test` are the only commands a fresh machine needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,train,dev,integrations,cluster,web,docs

.PHONY: demo test setup clean bench compare mitdb-cv mitdb-model

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the CPU wheel on disk, so nothing else can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pedstream demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks write bench/results/*.json (the README quotes them). score qrs needs ../shared/data/mitdb.
# pedstream bench (issue 11): model, engine (replay and MQTT), ingest (with mne-lsl: the peers extra), alarm.
bench: $(STAMP)
	$(BIN)/pip install -q -e ".[peers]"
	$(BIN)/python bench/bench_dsp.py
	$(BIN)/pedstream bench model --providers cpu --batches 1,8,32,128 --json bench/results/model.json
	$(BIN)/pedstream bench engine --source replay --streams 200,400,500,600,800,1000 --seconds 20 --json bench/results/engine.json
	$(BIN)/pedstream bench engine --source replay --streams 200 --aligned --seconds 20 --json bench/results/engine_aligned.json
	$(BIN)/pedstream bench engine --source mqtt --streams 100,200,300 --all --seconds 20 --json bench/results/engine_mqtt.json
	$(BIN)/pedstream bench engine --source mqtt --streams 200,300,400 --all --seconds 20 --set replay.mqtt_bundle_bytes=65536 --json bench/results/engine_mqtt_bundle.json
	$(BIN)/pedstream bench ingest --streams 200 --seconds 20 --peer mne-lsl --json bench/results/ingest.json
	$(BIN)/pedstream bench alarm --json bench/results/alarm.json
	$(BIN)/python bench/profile_engine.py --streams 600 --seconds 20 --out bench/results/engine_profile.md
	$(BIN)/pedstream score qrs --data ../shared/data/mitdb --peer xqrs --json bench/results/qrs_mitdb.json
	$(BIN)/pedstream score qrs --data ../shared/data/nstdb --records 118e24 118e12 118e00 --peer xqrs --json bench/results/qrs_nstdb.json

# The full AGCACL-vs-baselines comparison (about an hour on 2 cores), then the demo model.
compare: $(STAMP)
	$(BIN)/python -m bench.train_compare --out bench/results/compare --minutes 10

# Real ECG (needs ../shared/data/mitdb): AGCACL vs baselines by record-wise CV inside MIT-BIH DS1
# (about 50 min on 2 cores), then the shipped AAMI beat classifier models/mitdb-aami (about 5 min).
mitdb-cv: $(STAMP)
	$(BIN)/python -m bench.mitdb_cv --out bench/results/mitdb_cv

mitdb-model: $(STAMP)
	bash bench/make_mitdb_model.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
