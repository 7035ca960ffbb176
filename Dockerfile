# The dashboard as a shared, read-only instance (docs/hosting.md).
#   docker build -t dynamics-dashboard . && docker run -p 8501:8501 dynamics-dashboard
# Hosted mode is on by default (DYNAMICS_READONLY=1); pass -e DYNAMICS_READONLY=0 for a private instance.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DYNAMICS_READONLY=1 \
    DYNAMICS_UPLOAD_DIR=/tmp/dynamics-uploads \
    DYNAMICS_CACHE_DIR=/tmp/dynamics-remote

WORKDIR /app
# CPU torch first, from PyTorch's CPU index, so requirements.txt (torch>=2.4) does not pull a CUDA build; every
# other package at the version pinned in constraints.txt (the versions the tests passed with)
COPY requirements.txt constraints.txt ./
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r requirements.txt -c constraints.txt

# the code and the bundled runs stay owned by root: the app user can read them, not change them
COPY . .
RUN useradd --create-home --uid 10001 app
USER app

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"
# The settings are checked first (an unclear DYNAMICS_READONLY stops here with one line); uploads are capped at
# 50 MB in the server itself (the hosted import limit), and uncaught errors show no traceback.
CMD ["sh", "-c", "python -m dashboard.settings && exec streamlit run app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true --server.maxUploadSize 50 --client.showErrorDetails none"]
