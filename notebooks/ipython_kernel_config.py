# Configuration of the kernels that run audiorag's notebooks (JupyterLab, papermill, sweeps); `make install` puts
# it in the virtual environment's etc/ipython/. Warnings and errors only: ipykernel warns at every start that its
# loopback TCP is unencrypted, noise on a workstation. And not the line ipykernel logs when jupyter_client stops
# it: the client always sends SIGINT before its shutdown request, and a kernel still answering a message then logs
# "KeyboardInterrupt caught in kernel." at ERROR level (a race: some runs print it, most do not).
import logging

if "get_config" in globals():  # traitlets defines get_config() while it reads this file (not on import)
    get_config().IPKernelApp.log_level = "ERROR"  # noqa: F821


class _StoppedByTheClient(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "KeyboardInterrupt caught in kernel" not in record.getMessage()


logging.getLogger("IPKernelApp").addFilter(_StoppedByTheClient())
