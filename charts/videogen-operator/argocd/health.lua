-- Argo CD health check for videogen.dev/VideoGenJob.
-- Install it under resource.customizations.health.videogen.dev_VideoGenJob in argocd-cm
-- (see README.md beside this file). A finished job stays Healthy or Degraded forever:
-- the operator never re-runs it, and Argo CD never needs to.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the videogen operator to accept the job"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
local phase = obj.status.phase
local reason = obj.status.reason or phase
local message = obj.status.message or ""
local terminal = phase == "Succeeded" or phase == "Failed" or phase == "Cancelled"
if not terminal and generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  if obj.status.output ~= nil and obj.status.output.uri ~= nil then
    hs.message = reason .. ": " .. obj.status.output.uri
  else
    hs.message = reason
  end
elseif phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = reason .. ": " .. message
elseif reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
else
  hs.status = "Progressing"
  local progress = obj.status.progress
  if progress ~= nil and progress.summary ~= nil then
    hs.message = phase .. " (" .. reason .. "): " .. progress.summary
  else
    hs.message = phase .. " (" .. reason .. "): " .. message
  end
end
return hs
