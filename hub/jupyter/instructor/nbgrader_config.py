# nbgrader for an instructor's server on the course's hub (hub/jupyterhub_config.py sets the
# variables; on TLJH, put this file in the instructor's ~/.jupyter/). The course folder is
# ~/course, built there with
#   python -m tooling.classroom assignments --size ci --course-dir ~/course
# and its own nbgrader_config.py (course id, cell time limit) is read as well.
import os

c = get_config()  # noqa: F821
c.Exchange.root = os.environ.get("MNIST_AD_HUB_EXCHANGE", "/srv/nbgrader/exchange")
c.CourseDirectory.course_id = os.environ.get("MNIST_AD_HUB_COURSE", "mnist-adversarial-defense")
c.CourseDirectory.root = os.path.join(os.path.expanduser("~"), "course")
c.CourseDirectory.student_id = "*"  # collect and grade every student, whatever else says
course_config = os.path.join(c.CourseDirectory.root, "nbgrader_config.py")
if os.path.exists(course_config):
    load_subconfig(course_config)  # noqa: F821
# Submissions are named by hub user, not owned by a Unix user of that name (every server
# runs as one user here; jupyter-<name> on TLJH): no "cheating attempt?" warning for each.
c.ExchangeCollect.check_owner = False
