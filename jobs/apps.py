from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Upscaling jobs"

    def ready(self):
        from django_q.signals import post_execute_in_worker

        from jobs import scrub

        # Provider text leaves no secret in a log line or in a failed task's stored
        # result, whoever wrote it (jobs.scrub says why each is needed).
        scrub.install_log_scrubbing()
        post_execute_in_worker.connect(scrub.scrub_task_result, dispatch_uid="jobs.scrub")
