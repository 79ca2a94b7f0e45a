from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
    via = models.CharField(max_length=20)

    class Meta:
        ordering = ["id"]
