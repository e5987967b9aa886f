# kaohe on Airflow's official image, with the CJK fonts and HarfBuzz subsetting PDFs need, and a C
# compiler for WeasyPrint's compiled modules (reports/compiled.py; without them PDFs are slower).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei fonts-noto-cjk libharfbuzz-subset0 gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow requirements.lock pyproject.toml /opt/kaohe/
RUN pip install --no-cache-dir -r /opt/kaohe/requirements.lock "apache-airflow==3.3.2"
# a layer of its own: only a new lock file or a change to these modules compiles them again
COPY --chown=airflow reports/__init__.py reports/compiled.py reports/cythonize.py /opt/kaohe/reports/
RUN cd /opt/kaohe && python -m reports.cythonize build
COPY --chown=airflow . /opt/kaohe
RUN pip install --no-cache-dir --no-deps -e /opt/kaohe \
 && python -m reports.fonts
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/kaohe/dags
