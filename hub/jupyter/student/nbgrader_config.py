# nbgrader for a student's server on the course's hub: read from JUPYTER_CONFIG_PATH by the
# Assignments tab and by `nbgrader` commands. hub/jupyterhub_config.py sets the variables;
# elsewhere (e.g. TLJH's /opt/tljh/user/etc/jupyter/) nbgrader's defaults apply.
import os

c = get_config()  # noqa: F821
c.Exchange.root = os.environ.get("MNIST_AD_HUB_EXCHANGE", "/srv/nbgrader/exchange")
c.CourseDirectory.course_id = os.environ.get("MNIST_AD_HUB_COURSE", "mnist-adversarial-defense")
# Name submissions by the hub user, not by the Unix user the server runs as (one shared
# user with SimpleLocalProcessSpawner; jupyter-<name> on TLJH).
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
