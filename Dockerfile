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
COPY --chown=airflow . /opt/kaohe
ENV KAOHE_COMPILED_DIR=/opt/kaohe/.compiled
RUN pip install --no-cache-dir --no-deps -e /opt/kaohe \
 && python -m reports.fonts \
 && { python -m reports.cythonize build || echo "kaohe: WeasyPrint not compiled; PDFs render in pure Python"; }
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/kaohe/dags
