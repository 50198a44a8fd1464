"""GitHub's JSON shapes for the local GitHub's objects.

Each function returns what api.github.com returns for that resource, field for field as the
OpenAPI schema requires, with URLs on the local server. URLs matter: PyGithub follows the
`url` fields it is given (an Environment's secrets live under its `url`, a Team's members
under its `url`), so they must point back here, with the same /api/v3 prefix the client used.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from .state import (
    Environment,
    GitHubState,
    Membership,
    Org,
    OrgSecret,
    Repo,
    Secret,
    Team,
    User,
    WorkflowRun,
)

DOCS = "https://docs.github.com/rest"


@dataclass(frozen=True)
class Urls:
    api: str  # REST base, e.g. http://127.0.0.1:9100/api/v3
    web: str  # web base, e.g. http://127.0.0.1:9100


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def node_id(kind: str, number: int) -> str:
    """GitHub's legacy global node id: base64 of "0<len>:<Kind><id>", e.g. MDQ6VXNlcjE=."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def error(message: str, status: int, documentation_url: str = DOCS, **extra) -> dict:
    return {
        "message": message,
        "documentation_url": documentation_url,
        **extra,
        "status": str(status),
    }


# -- accounts --------------------------------------------------------------------------------


def simple_user(u: Urls, account: User | Org) -> dict:
    """simple-user; an organization owning a repository is shown in this shape too."""
    is_org = isinstance(account, Org)
    user_url = f"{u.api}/users/{account.login}"  # GitHub uses /users/ for organizations too
    return {
        "login": account.login,
        "id": account.id,
        "node_id": node_id("Organization" if is_org else "User", account.id),
        "avatar_url": f"{u.web}/avatars/u/{account.id}?v=4",
        "gravatar_id": "",
        "url": user_url,
        "html_url": f"{u.web}/{account.login}",
        "followers_url": f"{user_url}/followers",
        "following_url": f"{user_url}/following{{/other_user}}",
        "gists_url": f"{user_url}/gists{{/gist_id}}",
        "starred_url": f"{user_url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{user_url}/subscriptions",
        "organizations_url": f"{user_url}/orgs",
        "repos_url": f"{user_url}/repos",
        "events_url": f"{user_url}/events{{/privacy}}",
        "received_events_url": f"{user_url}/received_events",
        "type": "Organization" if is_org else "User",
        "user_view_type": "public",
        "site_admin": False if is_org else account.site_admin,
    }


def public_user(u: Urls, user: User) -> dict:
    return {
        **simple_user(u, user),
        "name": user.name,
        "company": None,
        "blog": "",
        "location": None,
        "email": user.email,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.created_at),
    }


def private_user(u: Urls, user: User) -> dict:
    """GET /user: the public profile plus what only the user sees."""
    return {
        **public_user(u, user),
        "user_view_type": "private",
        "notification_email": user.email,
        "private_gists": 0,
        "total_private_repos": 0,
        "owned_private_repos": 0,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": True,
        "plan": {"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000},
    }


def email_addresses(user: User) -> list[dict]:
    address = user.email or f"{user.id}+{user.login}@users.noreply.github.com"
    return [{"email": address, "primary": True, "verified": True, "visibility": "private"}]


def organization_simple(u: Urls, org: Org) -> dict:
    url = f"{u.api}/orgs/{org.login}"
    return {
        "login": org.login,
        "id": org.id,
        "node_id": node_id("Organization", org.id),
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": f"{u.web}/avatars/u/{org.id}?v=4",
        "description": None,
    }


def organization_full(u: Urls, org: Org) -> dict:
    return {
        **organization_simple(u, org),
        "name": org.name or org.login,
        "html_url": f"{u.web}/{org.login}",
        "has_organization_projects": True,
        "has_repository_projects": True,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "type": "Organization",
        "created_at": iso(org.created_at),
        "updated_at": iso(org.created_at),
        "archived_at": None,
    }


def org_membership(u: Urls, org: Org, user: User, membership: Membership) -> dict:
    return {
        "url": f"{u.api}/orgs/{org.login}/memberships/{user.login}",
        "state": membership.state,
        "role": membership.role,
        "organization_url": f"{u.api}/orgs/{org.login}",
        "organization": organization_simple(u, org),
        "user": simple_user(u, user),
    }


# -- teams -----------------------------------------------------------------------------------


def team(u: Urls, state: GitHubState, found: Team) -> dict:
    """team; its url is GitHub's id-based one, which PyGithub follows for members."""
    org = state.org(found.org)
    url = f"{u.api}/organizations/{org.id}/team/{found.id}"
    return {
        "id": found.id,
        "node_id": node_id("Team", found.id),
        "url": url,
        "html_url": f"{u.web}/orgs/{org.login}/teams/{found.slug}",
        "name": found.name,
        "slug": found.slug,
        "description": None,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": f"{url}/members{{/member}}",
        "repositories_url": f"{url}/repos",
        "type": "organization",
        "organization_id": org.id,
        "parent": None,
    }


def team_full(u: Urls, state: GitHubState, found: Team) -> dict:
    org = state.org(found.org)
    return {
        **team(u, state, found),
        "members_count": len(found.members),
        "repos_count": 0,
        "created_at": iso(found.created_at),
        "updated_at": iso(found.created_at),
        "organization": organization_full(u, org),
    }


def team_member(u: Urls, user: User) -> dict:
    return simple_user(u, user)


# -- repositories ----------------------------------------------------------------------------

# Hypermedia templates every repository object carries (name -> suffix of the repo's url).
_REPO_LINKS = {
    "forks_url": "/forks",
    "keys_url": "/keys{/key_id}",
    "collaborators_url": "/collaborators{/collaborator}",
    "teams_url": "/teams",
    "hooks_url": "/hooks",
    "issue_events_url": "/issues/events{/number}",
    "events_url": "/events",
    "assignees_url": "/assignees{/user}",
    "branches_url": "/branches{/branch}",
    "tags_url": "/tags",
    "blobs_url": "/git/blobs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "trees_url": "/git/trees{/sha}",
    "statuses_url": "/statuses/{sha}",
    "languages_url": "/languages",
    "stargazers_url": "/stargazers",
    "contributors_url": "/contributors",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "commits_url": "/commits{/sha}",
    "git_commits_url": "/git/commits{/sha}",
    "comments_url": "/comments{/number}",
    "issue_comment_url": "/issues/comments{/number}",
    "contents_url": "/contents/{+path}",
    "compare_url": "/compare/{base}...{head}",
    "merges_url": "/merges",
    "archive_url": "/{archive_format}{/ref}",
    "downloads_url": "/downloads",
    "issues_url": "/issues{/number}",
    "pulls_url": "/pulls{/number}",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "labels_url": "/labels{/name}",
    "releases_url": "/releases{/id}",
    "deployments_url": "/deployments",
}


def minimal_repository(u: Urls, state: GitHubState, repo: Repo) -> dict:
    url = f"{u.api}/repos/{repo.full_name}"
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": simple_user(u, state.account(repo.owner)),
        "html_url": f"{u.web}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": url,
        **{name: url + suffix for name, suffix in _REPO_LINKS.items()},
    }


def full_repository(u: Urls, state: GitHubState, repo: Repo) -> dict:
    host = u.web.split("://", 1)[-1]
    created = iso(repo.created_at)
    return {
        **minimal_repository(u, state, repo),
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "clone_url": f"{u.web}/{repo.full_name}.git",
        "svn_url": f"{u.web}/{repo.full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "subscribers_count": 0,
        "network_count": 0,
        "size": 0,
        "default_branch": "main",
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "license": None,
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
        "permissions": {
            "admin": True,
            "maintain": True,
            "push": True,
            "triage": True,
            "pull": True,
        },
        "allow_forking": True,
        "web_commit_signoff_required": False,
    }


# -- environments ----------------------------------------------------------------------------


def environment(u: Urls, state: GitHubState, repo: Repo, env: Environment) -> dict:
    """environment, protection_rules in GitHub's order: wait timer, reviewers, branch policy.

    A rule appears only while it is configured, as on GitHub. prevent_self_review belongs to
    the required_reviewers rule, so it is not visible while there are no reviewers.
    """
    quoted = quote(env.name, safe="")
    rules = []
    if env.wait_timer:
        rule_id = env.rule_ids["wait_timer"]
        rules.append(
            {
                "id": rule_id,
                "node_id": node_id("Gate", rule_id),
                "type": "wait_timer",
                "wait_timer": env.wait_timer,
            }
        )
    if env.reviewers:
        rule_id = env.rule_ids["required_reviewers"]
        rules.append(
            {
                "id": rule_id,
                "node_id": node_id("Gate", rule_id),
                "type": "required_reviewers",
                "prevent_self_review": env.prevent_self_review,
                "reviewers": [_reviewer(u, state, kind, rid) for kind, rid in env.reviewers],
            }
        )
    if env.deployment_branch_policy is not None:
        rule_id = env.rule_ids["branch_policy"]
        rules.append({"id": rule_id, "node_id": node_id("Gate", rule_id), "type": "branch_policy"})
    return {
        "id": env.id,
        "node_id": node_id("Environment", env.id),
        "name": env.name,
        "url": f"{u.api}/repos/{repo.full_name}/environments/{quoted}",
        "html_url": (
            f"{u.web}/{repo.full_name}/deployments/activity_log?environments_filter={quoted}"
        ),
        "created_at": iso(env.created_at),
        "updated_at": iso(env.updated_at),
        "can_admins_bypass": env.can_admins_bypass,
        "protection_rules": rules,
        "deployment_branch_policy": env.deployment_branch_policy,
    }


def _reviewer(u: Urls, state: GitHubState, kind: str, reviewer_id: int) -> dict:
    if kind == "User":
        return {"type": "User", "reviewer": simple_user(u, state.user_by_id(reviewer_id))}
    return {"type": "Team", "reviewer": team(u, state, state.team_by_id(reviewer_id))}


# -- secrets ---------------------------------------------------------------------------------


def public_key(key) -> dict:
    return {"key_id": key.key_id, "key": key.public_b64}


def secret(found: Secret) -> dict:
    return {
        "name": found.name,
        "created_at": iso(found.created_at),
        "updated_at": iso(found.updated_at),
    }


def org_secret(u: Urls, org: Org, found: OrgSecret) -> dict:
    shape = {**secret(found), "visibility": found.visibility}
    if found.visibility == "selected":
        shape["selected_repositories_url"] = (
            f"{u.api}/orgs/{org.login}/actions/secrets/{found.name}/repositories"
        )
    return shape


# -- workflow runs ---------------------------------------------------------------------------


def workflow_run(u: Urls, state: GitHubState, repo: Repo, run: WorkflowRun, attempt: int) -> dict:
    """workflow-run, as GET .../actions/runs/{run_id}/attempts/{attempt_number} answers:
    `actor` is the run's author, `triggering_actor` whoever started this attempt. The latest
    attempt is still in progress; earlier ones ended (in failure: why else re-run them)."""
    url = f"{u.api}/repos/{repo.full_name}/actions/runs/{run.id}"
    latest = attempt == len(run.triggering_actors)
    started = iso(run.attempts_started_at[attempt - 1])
    minimal = minimal_repository(u, state, repo)
    return {
        "id": run.id,
        "name": run.name,
        "node_id": node_id("WorkflowRun", run.id),
        "check_suite_id": run.id + 1,
        "check_suite_node_id": node_id("CheckSuite", run.id + 1),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.path,
        "display_title": run.name,
        "run_number": run.run_number,
        "run_attempt": attempt,
        "referenced_workflows": [],
        "event": run.event,
        "status": "in_progress" if latest else "completed",
        "conclusion": None if latest else "failure",
        "workflow_id": run.workflow_id,
        "url": url,
        "html_url": f"{u.web}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": iso(run.created_at),
        "updated_at": started,
        "actor": simple_user(u, state.user(run.actor)),
        "triggering_actor": simple_user(u, state.user(run.triggering_actors[attempt - 1])),
        "run_started_at": started,
        "jobs_url": f"{url}/attempts/{attempt}/jobs",
        "logs_url": f"{url}/attempts/{attempt}/logs",
        "check_suite_url": f"{u.api}/repos/{repo.full_name}/check-suites/{run.id + 1}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": f"{url}/attempts/{attempt - 1}" if attempt > 1 else None,
        "workflow_url": f"{u.api}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}",
        "head_commit": {
            "id": run.head_sha,
            "tree_id": run.head_sha,
            "message": run.name,
            "timestamp": iso(run.created_at),
            "author": None,
            "committer": None,
        },
        "repository": minimal,
        "head_repository": minimal,
        "head_repository_id": repo.id,
    }


# -- webhook events --------------------------------------------------------------------------


def deployment_protection_rule_event(
    u: Urls,
    state: GitHubState,
    repo: Repo,
    environment_name: str,
    *,
    run_id: int,
    sender: User,
    installation_id: int,
    deployment_id: int,
    ref: str = "main",
    sha: str = "0" * 40,
    event: str = "workflow_dispatch",
) -> dict:
    """deployment-protection-rule-requested: what GitHub POSTs to an App whose custom
    deployment protection rule is enabled on the environment a job waits for.

    `ref` is the branch or tag *name* ("main"), as GitHub sends it (not "refs/heads/main"),
    and `sender` is the user who triggered the run, who is also the deployment's creator.
    """
    repository = {
        **full_repository(u, state, repo),
        "owner": simple_user(u, state.account(repo.owner)),
    }
    repo_url = repository["url"]
    created = iso(repo.created_at)
    deployment = {
        "url": f"{repo_url}/deployments/{deployment_id}",
        "id": deployment_id,
        "node_id": node_id("Deployment", deployment_id),
        "sha": sha,
        "ref": ref,
        "task": "deploy",
        "payload": {},
        "original_environment": environment_name,
        "environment": environment_name,
        "description": None,
        "creator": simple_user(u, sender),
        "created_at": created,
        "updated_at": created,
        "statuses_url": f"{repo_url}/deployments/{deployment_id}/statuses",
        "repository_url": repo_url,
        "transient_environment": False,
        "production_environment": False,
        "performed_via_github_app": None,
    }
    payload = {
        "action": "requested",
        "environment": environment_name,
        "event": event,
        "sha": sha,
        "ref": ref,
        "deployment_callback_url": (
            f"{repo_url}/actions/runs/{run_id}/deployment_protection_rule"
        ),
        "deployment": deployment,
        "pull_requests": [],
        "repository": repository,
        "installation": {
            "id": installation_id,
            "node_id": node_id("Installation", installation_id),
        },
        "sender": simple_user(u, sender),
    }
    owner = state.orgs.get(repo.owner.lower())
    if owner is not None:
        payload["organization"] = organization_simple(u, owner)
    return payload


def workflow_run_event(
    u: Urls,
    state: GitHubState,
    repo: Repo,
    run: WorkflowRun,
    *,
    attempt: int,
    conclusion: str | None,
) -> dict:
    """workflow-run-completed: what GitHub POSTs to an App (or a repository webhook)
    subscribed to `workflow_run` when an attempt of a run ends. `sender` is whoever started
    that attempt; the run's `status` is "completed" with the given conclusion."""
    repository = {
        **full_repository(u, state, repo),
        "owner": simple_user(u, state.account(repo.owner)),
    }
    rest = workflow_run(u, state, repo, run, attempt)
    # The webhook's head_commit names its author and committer (the REST shape may not).
    author = {"name": run.actor, "email": f"{run.actor}@users.noreply.github.com"}
    workflow_run_shape = {
        **rest,
        "status": "completed",
        "conclusion": conclusion,
        "head_commit": {**rest["head_commit"], "author": author, "committer": author},
    }
    created = iso(run.created_at)
    workflow_url = f"{u.api}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}"
    payload = {
        "action": "completed",
        "repository": repository,
        "sender": simple_user(u, state.user(run.triggering_actors[attempt - 1])),
        "workflow": {
            "badge_url": f"{u.web}/{repo.full_name}/workflows/{run.name}/badge.svg",
            "created_at": created,
            "html_url": f"{u.web}/{repo.full_name}/blob/main/{run.path}",
            "id": run.workflow_id,
            "name": run.name,
            "node_id": node_id("Workflow", run.workflow_id),
            "path": run.path,
            "state": "active",
            "updated_at": created,
            "url": workflow_url,
        },
        "workflow_run": workflow_run_shape,
    }
    owner = state.orgs.get(repo.owner.lower())
    if owner is not None:
        payload["organization"] = organization_simple(u, owner)
    return payload
