# kaohe: `make demo` runs the pipeline on generated data, `make test` runs the whole suite.
# Everything is installed from requirements.lock into .venv; nothing else is needed.
# The virtualenv's interpreter: the distribution's python3.11 where there is one, else the first
# python3.11 on PATH. Debian builds CPython with profile-guided and link-time optimisation; a
# plain source build (pyenv's default) runs WeasyPrint, which is pure Python, about a third
# slower (README, Speed). `make PYTHON=...` chooses another (for a new .venv: rm -rf .venv).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3.11)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kaohe-installed
FONT := reports/templates/assets/fonts/kaohe-wqy-microhei.ttf
SCHEME ?=
export KAOHE_HOME ?= $(CURDIR)/var
export AIRFLOW_HOME ?= $(KAOHE_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := false

.PHONY: demo test lint bench system-deps compiled clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { test "$(origin PYTHON)" = file && test "$(PYTHON)" != python3.11 \
	  && echo "kaohe: $(PYTHON) cannot make a virtualenv (on Debian: apt install python3.11-venv); using python3.11 from PATH" >&2 \
	  && { ! test -f $(VENV)/pyvenv.cfg || rm -rf $(VENV); } && python3.11 -m venv $(VENV); }
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements.lock "apache-airflow==3.3.2"
	$(PY) -c "import site, sys; open(site.getsitepackages()[0] + '/kaohe.pth', 'w').write(sys.argv[1] + chr(10))" "$(CURDIR)"
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

# WenQuanYi Micro Hei reordered so that a PDF's font subset is quick to make (reports/fonts.py);
# made again when Debian's font changes; without fonts-wqy-microhei it says so, and PDFs use the
# installed fonts
$(FONT): reports/fonts.py $(STAMP) $(wildcard /usr/share/fonts/truetype/wqy/wqy-microhei.ttc) | system-deps
	$(PY) -m reports.fonts

# WeasyPrint's busiest modules compiled with Cython for this virtualenv (reports/compiled.py), a
# quarter fewer instructions per PDF: built when missing, stale or for another interpreter (the
# check takes a moment); without a C compiler and Python's headers it says so, and PDFs render
# from the installed pure Python source, slower
compiled: $(STAMP)
	@$(PY) -m reports.cythonize status --quiet || $(PY) -m reports.cythonize build \
	  || echo "kaohe: WeasyPrint not compiled (the reason is above); PDFs render in pure Python, slower" >&2

demo: $(STAMP) system-deps $(FONT) compiled
	$(PY) -m etl.demo $(if $(SCHEME),--scheme $(SCHEME))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint system-deps $(FONT) compiled
	$(PY) -m pytest -n auto --dist loadfile

# the scale ladder (intake to scores, 2,000 to 200,000 people; BENCH_FULL=1 for more), then
# rendering; bench.ingest and bench.scoring still run alone for per-source and read/compute splits
bench: $(STAMP) system-deps $(FONT) compiled
	$(PY) -m bench.ladder
	$(PY) -m bench.render

clean:
	rm -rf var .pytest_cache
