"""An EMULATOR of the NeMo microservices and NIM HTTP APIs, for tests and demos. It is not NVIDIA NeMo.

One HTTP service speaks the API surface the flywheel uses (Entity Store, Data Store with a Hugging
Face-compatible API, Customizer, Evaluator, Deployment Management, and an OpenAI-compatible NIM),
runs time-driven job state machines, and computes model outputs from the data it is given
(``brain.py``, ``evaluation.py``). See ``docs/emulator.md``.

Run it with ``python -m include.nemo_emulator``; in tests use
``include.nemo_emulator.testing.running_emulator``. Nothing here imports Airflow.
"""
