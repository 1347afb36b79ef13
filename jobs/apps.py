from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Upscaling jobs"

    def ready(self):
        from django.db.models.signals import post_migrate
        from django_q.signals import post_execute_in_worker, pre_execute

        from jobs.tasks import route_schedules

        post_migrate.connect(route_schedules, sender=self, dispatch_uid="jobs.route_schedules")

        from jobs import scrub, watchdog

        # Provider text leaves no secret in a log line or in a failed task's stored
        # result, whoever wrote it (jobs.scrub says why each is needed).
        scrub.install_log_scrubbing()
        post_execute_in_worker.connect(scrub.scrub_task_result, dispatch_uid="jobs.scrub")
        # The cluster's proof of work, read by its supervisor (`manage.py cluster`).
        pre_execute.connect(watchdog.task_started, dispatch_uid="jobs.watchdog.started")
        post_execute_in_worker.connect(
            watchdog.task_finished, dispatch_uid="jobs.watchdog.finished"
        )
