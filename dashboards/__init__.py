"""forewarn.dashboards: Grafana dashboards as code (``definitions``, built to ``json/`` and
``provisioning/`` by ``build``), the plugin's macro expansion (``macros``) and panel runner
(``runner``) that prove every panel's SQL, ``forewarn grafana push|check`` (``push``), ``forewarn
report`` (``report``) and ``forewarn demo`` (``demo``, driving the synthetic shop of ``workload``)."""
