"""Courses and their documents: list, upload (multipart), delete; large uploads ingest in the background.

Every course in a path is checked against the key's scopes before anything else, so a key of course A
gets 403 for course B whether B exists or not.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Request, Response, UploadFile

from leanrank.errors import InputError
from leanrank.serve.errors import LimitExceededError, NotFoundError
from leanrank.serve.ingest import IngestJob, source_name
from leanrank.serve.service import PrincipalDep, ServiceDep, scoped_course
from leanrank.serve.wire import (
    CourseList,
    CourseOut,
    Deleted,
    DocumentList,
    DocumentOut,
    FileResult,
    IngestJobOut,
    errors,
)
from leanrank.storage import ensure_free

router = APIRouter(tags=["courses"], responses=errors(401, 403, 404, 422, 503, 507))


@router.get(
    "/v1/courses", summary="List courses", description="The courses this key may use, with chunk counts."
)
async def list_courses(service: ServiceDep, principal: PrincipalDep) -> CourseList:
    counts = await asyncio.to_thread(service.pipeline.courses)
    return CourseList(courses=[CourseOut(course=c, chunks=counts[c]) for c in principal.visible(counts)])


@router.delete("/v1/courses/{course}", summary="Delete a course", description="Every chunk of the course.")
async def delete_course(course: str, service: ServiceDep, principal: PrincipalDep) -> Deleted:
    course = scoped_course(principal, course)
    pipeline = service.pipeline
    async with service.jobs.writer:
        n = await asyncio.to_thread(pipeline.delete_course, course)
    return Deleted(course=course, deleted_chunks=n)


@router.get("/v1/courses/{course}/documents", summary="List a course's documents")
async def list_documents(course: str, service: ServiceDep, principal: PrincipalDep) -> DocumentList:
    course = scoped_course(principal, course)
    pipeline = service.pipeline
    await asyncio.to_thread(pipeline.check_course, course)
    sources = await asyncio.to_thread(pipeline.store.sources, course)
    return DocumentList(
        course=course, documents=[DocumentOut(source=s, chunks=n) for s, n in sorted(sources.items())]
    )


@router.delete("/v1/courses/{course}/documents/{source:path}", summary="Delete one document")
async def delete_document(course: str, source: str, service: ServiceDep, principal: PrincipalDep) -> Deleted:
    course = scoped_course(principal, course)
    pipeline = service.pipeline
    async with service.jobs.writer:
        await asyncio.to_thread(pipeline.check_course, course)
        n = await asyncio.to_thread(pipeline.store.delete_source, course, source)
    if not n:
        raise NotFoundError(f"no document {source!r} in course {course!r}")
    return Deleted(course=course, source=source, deleted_chunks=n)


def _job_out(request: Request, job: IngestJob) -> IngestJobOut:
    url = request.url_for("ingest_job", course=job.course, job_id=job.id)
    return IngestJobOut(
        id=job.id,
        course=job.course,
        status=job.status,
        bytes=job.bytes,
        files=[
            FileResult(source=f.source, status=f.status, chunks=f.chunks, reason=f.reason, kept=f.kept)
            for f in job.files
        ],
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
        status_url=url.path,
    )


def _check_distinct(names: list[str]) -> None:
    """No two files may land on one path, nor a file where another needs a folder (`a` and `a/b`)."""
    taken: set[str] = set()
    for name in names:
        if name in taken:
            raise InputError(f"two uploaded files are named {name!r}; each needs its own path")
        taken.add(name)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in taken:
                raise InputError(f"file {name!r} needs a folder where another uploaded file is")


def _save(stream: BinaryIO, dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
        return out.tell()


@router.post(
    "/v1/courses/{course}/documents",
    summary="Upload documents",
    description=(
        "Multipart `files` (Markdown, text, PDF, HTML, subtitles; a file name may hold a relative path, "
        "which becomes the source id). Uploads up to `serve.background_ingest_bytes` are ingested before "
        "the answer (200, status `done`); larger ones in the background (202, poll `status_url`; the job "
        "and its files are kept on disk, so a restart resumes it). "
        "A file already indexed with the same content is left unchanged; a changed one is replaced."
    ),
    responses={
        **errors(413),
        202: {"model": IngestJobOut, "description": "Accepted; ingesting in the background."},
    },
)
async def upload(
    course: str,
    files: Annotated[list[UploadFile], File(description="The course files.")],
    request: Request,
    response: Response,
    service: ServiceDep,
    principal: PrincipalDep,
) -> IngestJobOut:
    course = scoped_course(principal, course)
    limits = service.settings.serve
    if len(files) > limits.max_upload_files:
        raise LimitExceededError(
            "max_upload_files", len(files), limits.max_upload_files, "files in the upload"
        )
    names = [source_name(f.filename, f.headers.get("content-disposition")) for f in files]
    _check_distinct(names)
    pipeline = service.pipeline
    jobs = service.jobs
    ensure_free(jobs.folder, sum(f.size or 0 for f in files), "saving the upload")
    job_id = jobs.new_id()
    folder = jobs.files_of(job_id)
    try:
        sizes = [
            await asyncio.to_thread(_save, f.file, folder / name)
            for f, name in zip(files, names, strict=True)
        ]
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job = jobs.accept(job_id, course, sum(sizes))
    if job.bytes > limits.background_ingest_bytes:
        jobs.start(pipeline, job)
        response.status_code = 202
        out = _job_out(request, job)
        response.headers["location"] = out.status_url
        return out
    await jobs.run(pipeline, job)
    return _job_out(request, job)


@router.get(
    "/v1/courses/{course}/jobs/{job_id}",
    name="ingest_job",
    summary="Status of an upload's ingestion",
)
async def ingest_job(
    course: str, job_id: str, request: Request, service: ServiceDep, principal: PrincipalDep
) -> IngestJobOut:
    course = scoped_course(principal, course)
    return _job_out(request, service.jobs.get(course, job_id))
